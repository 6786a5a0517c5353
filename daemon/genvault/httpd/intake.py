"""``POST /v1/tasks`` and ``POST /webhooks/{account}``: ids of generations handed to the
daemon, by a submitter that started them or by the provider that ran them.

Both only *register* ids (as due, one transaction per request, at most
:data:`MAX_IDS_PER_REQUEST`) and wake the account's poll job (``on_due``); the result
itself is always read from the provider, so a webhook is a hint, never trusted data.
Each has its own door: the intake opens with the server token and is disabled (403)
without one; an account's webhook opens with that account's ``webhook_secret_*`` (a
callback URL is handed to a third party, so it must open nothing else), or with the
provider's signature where it signs its callbacks. Every refusal goes through
:meth:`Desk.refuse <genvault.httpd.request.Desk.refuse>`, which counts and logs it with
the account and reason only: never the body, headers or query.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from genvault.errors import WebhookRejectedError
from genvault.httpd.credentials import query_token, same_secret
from genvault.httpd.request import Desk, Refused, Request
from genvault.intake import IntakeError, parse_task_objects
from genvault.logs import get_logger

log = get_logger("genvault.server")

MAX_IDS_PER_REQUEST = 10_000
"""One intake or webhook request registers at most this many ids (one transaction)."""
INTAKE_DISABLED = "intake disabled: set server.token_env or server.token_file"


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """First entry per id: one request registers each id once (PostgreSQL refuses an
    ``ON CONFLICT DO UPDATE`` that touches the same row twice in one statement)."""
    seen: dict[str, dict[str, Any]] = {}
    for it in items:
        seen.setdefault(it["id"], it)
    return list(seen.values())


class Intake:
    """The intake and the webhooks of :class:`genvault.server.ApiServer`.

    ``token`` is the server token (None: the intake is disabled); ``webhook_secrets``
    maps an account to its callbacks' secret; ``on_due(account)`` is called once ids
    were stored (the scheduler runs that account's poll job now).
    """

    def __init__(
        self,
        desk: Desk,
        *,
        token: bytes | None,
        webhook_secrets: dict[str, bytes],
        on_due: Callable[[str], None] | None,
    ) -> None:
        self.desk = desk
        self.token = token
        self.webhook_secrets = webhook_secrets
        self.on_due = on_due

    def intake(self, req: Request) -> None:
        """``POST /v1/tasks``: a submitter hands over ids of generations it started."""
        if self.token is None:
            raise self.desk.refuse(
                "intake", None, HTTPStatus.FORBIDDEN, INTAKE_DISABLED, "disabled"
            )
        try:
            length = req.check_length(self.desk.settings.max_body_bytes)
        except Refused as exc:
            raise self.desk.refuse("intake", None, exc.status, exc.message, exc.reason) from None
        if not same_secret(req.bearer(), self.token):
            raise self.desk.refuse(
                "intake",
                None,
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token",
                "bad_token",
                headers={"WWW-Authenticate": 'Bearer realm="genvault"'},
            )
        try:
            data = json.loads(req.read_body(length))
        except Refused as exc:
            raise self.desk.refuse("intake", None, exc.status, exc.message, exc.reason) from None
        except ValueError:
            raise self.desk.refuse(
                "intake", None, HTTPStatus.BAD_REQUEST, "body is not valid JSON", "bad_json"
            ) from None
        account, items = self._intake_items(data)
        unique = _dedupe(items)
        new = self._register(account, unique, "intake")
        self.desk.count("intake.accepted")
        self.desk.count("intake.ids_new", new)
        self.desk.count("intake.ids_known", len(unique) - new)
        if new:
            self._wake(account)
        log.info("intake.registered", account=account, new=new, known=len(unique) - new)
        req.send_json(
            HTTPStatus.OK, {"account": account, "registered": new, "known": len(unique) - new}
        )

    def _intake_items(self, data: Any) -> tuple[str, list[dict[str, Any]]]:
        def bad(message: str, account: str | None = None) -> Refused:
            return self.desk.refuse("intake", account, HTTPStatus.BAD_REQUEST, message, "bad_body")

        if not isinstance(data, dict):
            raise bad('body must be a JSON object {"account": ..., "ids": [...]}')
        account = data.get("account")
        if not isinstance(account, str) or not account:
            raise bad("'account' must be a non-empty string")
        if account not in self.desk.rt.accounts:
            raise self.desk.refuse(
                "intake",
                account if len(account) <= 63 else account[:63],
                HTTPStatus.NOT_FOUND,
                f"no enabled account named {account!r}"[:200],
                "unknown_account",
            )
        if ("ids" in data) == ("tasks" in data):
            raise bad("send exactly one of 'ids' or 'tasks'", account)
        key = "ids" if "ids" in data else "tasks"
        entries = data[key]
        if not isinstance(entries, list):
            raise bad(f"'{key}' must be a list", account)
        self._check_count("intake", account, len(entries), "request")
        if key == "ids":
            for i, entry in enumerate(entries):
                if not isinstance(entry, str):
                    raise bad(f"ids[{i}]: must be a string", account)
        try:
            return account, parse_task_objects(entries, where=key)
        except IntakeError as exc:
            raise bad(str(exc), account) from None

    def webhook(self, req: Request, account: str) -> None:
        """``POST /webhooks/{account}``: a provider says a task changed; poll it now."""
        acc = self.desk.rt.accounts.get(account)
        if acc is None:
            raise self.desk.refuse(
                "webhook", account, HTTPStatus.NOT_FOUND, "no such account", "unknown_account"
            )
        provider = acc.provider
        if provider.webhook_auth == "none":
            raise self.desk.refuse(
                "webhook",
                account,
                HTTPStatus.NOT_FOUND,
                f"{provider.name} sends no webhooks",
                "no_webhooks",
            )
        try:
            length = req.check_length(self.desk.settings.max_body_bytes)
        except Refused as exc:
            raise self.desk.refuse(
                "webhook", account, exc.status, exc.message, exc.reason
            ) from None
        secret = self.webhook_secrets.get(account)
        if provider.webhook_auth == "token" and secret is None:
            raise self.desk.refuse(
                "webhook",
                account,
                HTTPStatus.FORBIDDEN,
                f"{provider.name} webhooks need a secret: set accounts[{account}]."
                "webhook_secret_env or webhook_secret_file and add ?token=<secret> to the "
                "callback URL",
                "disabled",
            )
        if secret is not None:
            # Token webhooks: the only check there is. Signed ones (Akool): a real secret
            # beside a signature that is not one (providers/akool.py says why).
            offered = req.bearer() or query_token(req.query)
            if not same_secret(offered, secret):
                raise self.desk.refuse(
                    "webhook",
                    account,
                    HTTPStatus.UNAUTHORIZED,
                    "missing or wrong webhook secret",
                    "bad_token",
                )
        try:
            body = req.read_body(length)
        except Refused as exc:
            raise self.desk.refuse(
                "webhook", account, exc.status, exc.message, exc.reason
            ) from None
        try:
            raw_ids = provider.webhook_ids(body, req.header_map)
        except WebhookRejectedError as exc:
            if provider.webhook_auth == "signature":
                reason = str(getattr(exc, "reason", "bad_signature"))  # e.g. "replayed"
                raise self.desk.refuse(
                    "webhook", account, HTTPStatus.UNAUTHORIZED, "callback refused", reason
                ) from None
            raise self.desk.refuse(
                "webhook", account, HTTPStatus.BAD_REQUEST, "callback unreadable", "bad_body"
            ) from None
        except Exception:
            # An adapter bug must not become a 500 with a trace that might quote the body.
            raise self.desk.refuse(
                "webhook", account, HTTPStatus.BAD_REQUEST, "callback unreadable", "bad_body"
            ) from None
        self._check_count("webhook", account, len(raw_ids), "callback")
        try:
            items = parse_task_objects([str(i) for i in raw_ids], where="ids")
        except IntakeError:
            raise self.desk.refuse(
                "webhook", account, HTTPStatus.BAD_REQUEST, "callback names no valid id", "bad_id"
            ) from None
        unique = _dedupe(items)
        if unique:
            self._register(account, unique, "webhook")
            self._wake(account)
        self.desk.count("webhook.accepted")
        self.desk.count("webhook.ids", len(unique))
        log.info("webhook.accepted", account=account, ids=len(unique))
        req.send_json(HTTPStatus.OK, {"accepted": len(unique)})

    def _check_count(self, kind: str, account: str, ids: int, per: str) -> None:
        """At most :data:`MAX_IDS_PER_REQUEST` ids in one request (413)."""
        if ids > MAX_IDS_PER_REQUEST:
            raise self.desk.refuse(
                kind,
                account,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"at most {MAX_IDS_PER_REQUEST} ids per {per}",
                "too_many",
            )

    def _wake(self, account: str) -> None:
        if self.on_due is None:
            return
        try:
            self.on_due(account)
        except Exception as exc:  # the ids are stored; the next regular poll finds them
            log.warning("server.on_due_failed", account=account, error=type(exc).__name__)

    def _register(self, account: str, items: list[dict[str, Any]], source: str) -> int:
        acc = self.desk.rt.accounts[account]
        try:
            return self.desk.rt.store.register_tasks(
                provider=acc.provider.name,
                account=account,
                items=items,
                source=source,
                poll_horizon=self.desk.rt.poll_horizon,
            )
        except Exception as exc:
            log.error("server.store_failed", account=account, error=type(exc).__name__)
            raise Refused(
                HTTPStatus.SERVICE_UNAVAILABLE, "database unavailable", "store_failed"
            ) from None
