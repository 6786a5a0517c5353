"""The checks for a provider without a history listing: its status call, asked about
an id that cannot exist.

Such an API (ids come from ``genvault track``, the intake or webhooks) has nothing
to list, so doctor asks its status endpoint about
:attr:`~genvault.providers.base.Provider.doctor_probe_id`, a made-up id: "not found"
says that the endpoint is there and the key is taken. A 404 is ambiguous, since a
wrong ``base_url`` 404s too, so doctor then asks for :data:`CONTROL_PATH`, a path no
API has: the same 404 for both means there is no such endpoint at all.
"""

from __future__ import annotations

import re
from typing import Final

from genvault.doctor.findings import Level
from genvault.doctor.session import ProbeSession
from genvault.errors import BusinessError, NotFoundError, ProviderError
from genvault.net.api import ApiClient
from genvault.net.errors import short_error
from genvault.providers.base import Provider

CONTROL_PATH: Final = "genvault-doctor-no-such-endpoint"
"""Asked for when a status call answers HTTP 404: a path no API has, to tell "no such
task" from "no such endpoint" (a wrong ``base_url`` 404s on both alike)."""


def _detail_text(exc: Exception) -> str:
    """An HTTP error's body as :class:`ApiClient` quotes it, paths masked, to compare two."""
    text = str(exc).split(": HTTP ", 1)[-1]
    return re.sub(r"/[^\s\"'<>]*", "<path>", text)


def ask_status(session: ProbeSession, provider: Provider) -> ProviderError | None:
    """The status call for an id that cannot exist: "not found" is the healthy answer.

    None when the API answered with the key taken (the answer is kept as
    ``session.status_answer`` for :func:`check_status_call`); else the error, for the
    base URL and auth checks to explain.
    """
    try:
        provider.fetch(session.cls.doctor_probe_id)
    except NotFoundError as exc:
        if exc.status_code == 404 and _no_route(session, provider.api, exc):
            return NotFoundError(
                f"{exc} (and so does a path no API has: this is no {session.cls.name} endpoint)",
                status_code=404,
            )
        session.status_answer = exc
        return None
    except BusinessError as exc:
        session.status_answer = exc
        return None
    except ProviderError as exc:
        return exc
    session.status_answer = None
    return None


def _no_route(session: ProbeSession, api: ApiClient, exc: NotFoundError) -> bool:
    """Whether a path that cannot exist answers the same 404 as the status call."""
    session.spend()
    try:
        api.get_json(CONTROL_PATH)
    except NotFoundError as control:
        return _detail_text(control) == _detail_text(exc)
    except ProviderError:
        return False
    return False


def check_status_call(session: ProbeSession) -> None:
    """Say how the status call answered, and that the listing checks do not apply."""
    report = session.report
    answer = session.status_answer
    probe = session.cls.doctor_probe_id
    if isinstance(answer, NotFoundError):
        report.add(
            "status_call",
            Level.OK,
            f"a status call for the made-up id {probe!r} answers 'not found' "
            f"({short_error(answer, 90)}): the endpoint and the key work",
        )
    elif answer is not None:
        report.add(
            "status_call",
            Level.WARN,
            f"a status call for the made-up id {probe!r} answers {short_error(answer)} "
            "instead of 'not found': the key is taken, but the answer is unexpected",
        )
    else:
        report.add(
            "status_call",
            Level.WARN,
            f"a status call for the made-up id {probe!r} answered as if it existed",
        )
    report.add(
        "listing",
        Level.SKIP,
        "no history listing (ids come from `genvault track`, the intake or webhooks): "
        "paging, page cap, order, detail and media checks do not apply",
    )


__all__ = ["CONTROL_PATH", "ask_status", "check_status_call"]
