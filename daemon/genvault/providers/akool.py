"""Akool image generation: status by id (``infobymodelid``) and AES-encrypted webhooks.

Source: seed 002 (Akool "Get Image Result") and providers.md §3.

* Auth: header ``x-api-key: <key>`` (recommended), or ``Authorization: Bearer <token>``
  with a token from ``POST /api/open/v3/getToken``; if both arrive, Akool uses
  Authorization. Option ``auth_style`` picks one; genvault never sends both.
* No history listing: ids come from ``genvault track``, HTTP intake and Akool's webhook.
* Status: ``GET /api/open/v3/content/image/infobymodelid?image_model_id=<_id>`` ->
  ``{"code": 1000, "msg": "OK", "data": {...}}``. HTTP is 200 even for errors, so the
  business ``code`` decides: anything but 1000 raises (see :data:`CODES`).
* ``image_status``: 1 queued, 2 processing, 3 success (``image`` is set), 4 failed.
* Files: ``image`` (the result) and ``upscaled_urls[]`` (U1-U4 4K upscales).
* Deadline: "Generated images are valid for 7 days" -> ``create_time`` (Unix **ms**)
  + 7 days; a signed URL that expires earlier wins (the store takes the earliest).
* Webhook: ``{"signature", "dataEncrypt", "timestamp", "nonce"}`` where
  ``signature = sha1(join(sorted([clientId, timestamp, nonce, dataEncrypt])))`` and
  ``dataEncrypt = base64(AES-CBC(key=API key, iv=clientId, PKCS#7))`` of
  ``{"_id", "status", "type", "url"}``. The signature is a hash of values a sender
  can know, not a secret check; see :func:`open_callback` for what is one.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from pydantic import Field

from genvault.errors import (
    AuthError,
    BusinessError,
    MalformedResponseError,
    NotFoundError,
    PermanentProviderError,
    WebhookRejectedError,
)
from genvault.expiry import url_expiry
from genvault.providers import _parse as p
from genvault.providers._parse import dedupe_by_url
from genvault.providers.base import Provider, ProviderOptions
from genvault.records import (
    DeadlineSource,
    GenerationRecord,
    GenerationStatus,
    MediaKind,
    MediaRecord,
    MediaRole,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    from genvault.net.api import ApiClient

STATUS_PATH: Final = "api/open/v3/content/image/infobymodelid"
RETENTION: Final = timedelta(days=7)
SUCCESS: Final = 1000

STATUS: Final[dict[int, GenerationStatus]] = {
    1: GenerationStatus.QUEUED,
    2: GenerationStatus.RUNNING,
    3: GenerationStatus.SUCCEEDED,
    4: GenerationStatus.FAILED,
}

CODES: Final[dict[int, str]] = {
    1003: "parameter error or empty parameter",
    1008: "content does not exist",
    1009: "no permission",
    1010: "cannot operate this content",
    1101: "invalid authorization or token expired",
    1102: "authorization cannot be empty",
    1108: "image generate error",
    1200: "account banned",
}
"""Akool's business codes (providers.md §3); every code but 1000 is a failure."""
AUTH_CODES: Final = frozenset({1101, 1102, 1200})
NOT_FOUND_CODES: Final = frozenset({1008})

FAILED_REASON: Final = "image_status 4: image generation failed (Akool: check your input)"
_AES_KEY_SIZES: Final = (16, 24, 32)


class AkoolOptions(ProviderOptions):
    auth_style: Literal["x-api-key", "bearer"] = "x-api-key"
    """x-api-key: the key goes in ``x-api-key`` (Akool's recommendation); bearer: the
    configured secret is a token from ``getToken`` and goes in ``Authorization: Bearer``."""
    client_id: str | None = None
    """The account's clientId: the AES IV and part of the signature of webhooks. Polling
    works without it; webhooks are refused until it is set."""
    webhook_max_age_seconds: int | None = Field(default=600, ge=1)
    """Refuse callbacks whose ``timestamp`` is further than this from now (replay guard);
    None turns the check off."""
    webhook_types: tuple[str, ...] | None = ("image",)
    """Callback ``type`` values to act on (Akool sends one webhook format for all its
    products); a callback of another type verifies but names no id. None accepts all."""
    empty_success: Literal["running", "failed"] = "running"
    """What ``image_status`` 3 without any URL means: running (poll again; the URL may
    follow) or failed."""


class ReplayedCallbackError(WebhookRejectedError):
    """A callback whose nonce or ciphertext was already accepted within the window."""

    reason = "replayed"
    """The server's counter and log label for this refusal."""


REPLAY_MEMORY = 100_000
"""Callbacks remembered at most (oldest forgotten first): bounded whatever arrives."""
REPLAY_WINDOW_WITHOUT_AGE_CHECK = 3600.0
"""How long callbacks are remembered when ``webhook_max_age_seconds`` is None."""


class ReplayCache:
    """What was accepted within the window: ``nonce@timestamp`` and the ciphertext.

    A callback may be anything a sender with the clientId signs (the signature is
    no secret), so a captured one could be sent again unchanged, or re-signed with a
    fresh nonce and timestamp. Remembering the nonce catches the first, remembering
    the ciphertext (which only the API key can produce) the second. Entries live
    twice the age limit: a timestamp is accepted from ``max_age`` in the past to
    ``max_age`` in the future. Thread-safe: webhooks arrive on several threads.
    """

    def __init__(self, window_seconds: float, *, size: int = REPLAY_MEMORY) -> None:
        self.window = window_seconds
        self.size = size
        self.clock: Callable[[], float] = time.monotonic
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> forget at
        self._lock = threading.Lock()

    def admit(self, keys: Sequence[str]) -> bool:
        """Remember ``keys`` and say True, or say False if any of them is remembered."""
        with self._lock:
            now = self.clock()
            while self._seen and next(iter(self._seen.values())) <= now:
                self._seen.popitem(last=False)  # insertion order is expiry order
            if any(k in self._seen for k in keys):
                return False
            for k in keys:
                self._seen[k] = now + self.window
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True


class Akool(Provider):
    """Akool image jobs, followed by id: there is no listing to page through."""

    name: ClassVar[str] = "akool"
    default_base_url: ClassVar[str] = "https://openapi.akool.com"
    Options: ClassVar[type[ProviderOptions]] = AkoolOptions
    has_history: ClassVar[bool] = False
    retention: ClassVar[timedelta | None] = RETENTION
    retention_source: ClassVar[DeadlineSource] = DeadlineSource.RULE  # "valid for 7 days"
    webhook_auth: ClassVar[Literal["none", "token", "signature"]] = "signature"
    doctor_probe_id: ClassVar[str] = "0" * 24  # a well-formed ObjectId no task has

    options: AkoolOptions

    def __init__(
        self, api: ApiClient, options: ProviderOptions, account: str, *, api_key: str = ""
    ) -> None:
        super().__init__(api, options, account, api_key=api_key)
        max_age = self.options.webhook_max_age_seconds
        self.replays = ReplayCache(
            2.0 * max_age if max_age is not None else REPLAY_WINDOW_WITHOUT_AGE_CHECK
        )

    @classmethod
    def auth_headers(cls, api_key: str, options: ProviderOptions) -> dict[str, str]:
        style = options.auth_style if isinstance(options, AkoolOptions) else "x-api-key"
        if style == "bearer":
            return {"Authorization": f"Bearer {api_key}"}
        return {"x-api-key": api_key}

    def fetch(self, external_id: str) -> GenerationRecord:
        """One job's state; HTTP is 200 even for errors, so the body's code decides."""
        body = self.api.get_json(STATUS_PATH, {"image_model_id": external_id})
        return self.parse(unwrap(body, STATUS_PATH))

    def parse(self, payload: Any) -> GenerationRecord:
        return parse_item(payload, empty_success=self.options.empty_success)

    # ------------------------------------------------------------------ webhook

    def webhook_ids(self, body: bytes, headers: Mapping[str, str]) -> list[str]:
        """The ``_id`` of a checked, decrypted callback not seen before (Akool sends no
        auth headers). Only callbacks that decrypt are remembered, so a forger cannot
        use up a nonce the real callback will carry."""
        client_id = self.options.client_id
        if not client_id:
            raise WebhookRejectedError("akool webhooks need client_id")
        payload = open_callback(
            body,
            api_key=self._api_key,
            client_id=client_id,
            max_age_seconds=self.options.webhook_max_age_seconds,
        )
        env = json.loads(body)  # open_callback parsed and checked it already
        seen = (
            f"nonce:{_text(env.get('nonce'), 'nonce')}@{_text(env.get('timestamp'), 'ts')}",
            "data:" + hashlib.sha256(str(env["dataEncrypt"]).encode()).hexdigest(),
        )
        if not self.replays.admit(seen):
            raise ReplayedCallbackError(
                f"akool webhook: replayed (nonce or body seen in the last "
                f"{self.replays.window:.0f} s)"
            )
        wanted = self.options.webhook_types
        kind = p.as_str(payload.get("type"))
        if wanted is not None and kind is not None and kind not in wanted:
            return []
        external_id = p.as_str(payload.get("_id"))
        if not external_id:
            raise WebhookRejectedError("akool webhook: decrypted body has no _id")
        return [external_id]


# --------------------------------------------------------------------------- envelope


def unwrap(body: Any, path: str = STATUS_PATH) -> dict[str, Any]:
    """The ``data`` of a ``{"code", "msg", "data"}`` envelope; raises for a code != 1000."""
    env = p.require_dict(body, path)
    code = p.as_int(env.get("code"))
    if code is None:
        raise MalformedResponseError(f"{path}: no business code in {str(env)[:200]}")
    if code != SUCCESS:
        raise code_error(code, p.as_str(env.get("msg")), path)
    data = env.get("data")
    if not isinstance(data, dict):
        raise MalformedResponseError(f"{path}: code 1000 but 'data' is not an object")
    return data


def code_error(code: int, msg: str | None, path: str = STATUS_PATH) -> PermanentProviderError:
    """The exception for a business code: auth codes -> AuthError, 1008 -> NotFoundError."""
    meaning = CODES.get(code, "unknown Akool code")
    text = f"{path}: code {code} ({meaning})" + (f": {msg}" if msg else "")
    if code in AUTH_CODES:
        return AuthError(text, status_code=200)
    if code in NOT_FOUND_CODES:
        return NotFoundError(text, status_code=200)
    return BusinessError(text, code=code)


# --------------------------------------------------------------------------- parsing


def parse_item(
    payload: Any, *, empty_success: Literal["running", "failed"] = "running"
) -> GenerationRecord:
    """One get-result ``data`` object (or a whole success envelope) -> record."""
    item = p.require_dict(payload, "akool image result")
    if "_id" not in item and isinstance(item.get("data"), dict):
        item = item["data"]  # a whole {"code", "msg", "data"} body
    external_id = p.as_str(item.get("_id"))
    if not external_id:
        raise MalformedResponseError("akool image result has no _id")
    code = p.as_int(item.get("image_status"))
    status = (
        STATUS.get(code, GenerationStatus.UNKNOWN) if code is not None else GenerationStatus.UNKNOWN
    )
    media = _media(item) if status is GenerationStatus.SUCCEEDED else ()
    error = FAILED_REASON if status is GenerationStatus.FAILED else None
    if status is GenerationStatus.SUCCEEDED and not media:
        if empty_success == "failed":
            status, error = GenerationStatus.FAILED, "image_status 3 but no image URL"
        else:
            status = GenerationStatus.RUNNING  # poll again: the URL should follow
    created = p.epoch_millis(item.get("create_time"))
    expires = _plus(created, RETENTION)
    return GenerationRecord(
        external_id=external_id,
        status=status,
        provider_status=str(item.get("image_status")),
        created_at=created,
        expires_at=expires,
        expires_source=DeadlineSource.RULE if expires else None,
        kind="image",
        error=error,
        media=media,
        raw=item,
    )


def _plus(when: datetime | None, delta: timedelta) -> datetime | None:
    if when is None:
        return None
    with contextlib.suppress(OverflowError):  # create_time near datetime.max
        return when + delta
    return None


def _media(item: dict[str, Any]) -> tuple[MediaRecord, ...]:
    """``image`` first (a string, or a list for batch results), then ``upscaled_urls``."""
    found: list[MediaRecord] = []
    image = item.get("image")
    for url in image if isinstance(image, list) else [image]:
        _add(found, url, MediaRole.RESULT)
    for url in p.as_list(item.get("upscaled_urls")):
        _add(found, url, MediaRole.UPSCALE)
    return dedupe_by_url(found)


def _add(found: list[MediaRecord], raw: Any, role: MediaRole) -> None:
    url = p.http_url(raw)
    if url:
        found.append(MediaRecord(url, role, MediaKind.IMAGE, url_expires_at=url_expiry(url)))


# --------------------------------------------------------------------------- webhook crypto


def callback_signature(client_id: str, timestamp: str, nonce: str, data_encrypt: str) -> str:
    """Akool's ``sha1(sort([clientId, timestamp, nonce, dataEncrypt]).join(""))`` in hex."""
    joined = "".join(sorted([client_id, timestamp, nonce, data_encrypt]))
    return hashlib.sha1(joined.encode("utf-8"), usedforsecurity=False).hexdigest()


def aes_cipher(api_key: str, client_id: str) -> Cipher[modes.CBC]:
    """AES-CBC with key = the API key (clientSecret) and IV = the clientId, both UTF-8.

    Raises ValueError when the lengths cannot be an AES key (16/24/32) or IV (16).
    ``cryptography`` (OpenSSL bindings, ~6 MB resident) is imported here, not at
    module level: only a process that receives Akool webhooks ever needs it.
    """
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = api_key.encode("utf-8")
    iv = client_id.encode("utf-8")
    if len(key) not in _AES_KEY_SIZES:
        raise ValueError(f"the API key is {len(key)} bytes; AES needs 16, 24 or 32")
    if len(iv) != 16:
        raise ValueError(f"client_id is {len(iv)} bytes; the AES IV must be 16")
    return Cipher(algorithms.AES(key), modes.CBC(iv))


def _text(value: Any, field: str) -> str:
    """A signed field as Akool's JavaScript stringifies it (numbers without ``.0``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        n = p.as_int(value)
        if n is not None:
            return str(n)
    raise WebhookRejectedError(f"akool webhook: '{field}' is missing or not a string/number")


def open_callback(
    body: bytes, *, api_key: str, client_id: str, max_age_seconds: int | None
) -> dict[str, Any]:
    """Check (signature, then age) and decrypt one callback body; the decrypted object.

    **The signature is not a secret check.** It is a SHA-1 over the clientId, the
    timestamp, the nonce and dataEncrypt: the clientId identifies the account and is
    no secret (it is also the AES IV), the rest travels in the body, so anyone can sign
    any body. It catches a mangled callback early and cheaply, nothing more, and an
    unauthenticated body does reach the cipher. What a forger lacks is the API key:
    the body must decrypt under it (AES-CBC) to PKCS#7-padded JSON, or it is refused.
    CBC carries no MAC, so that check is weak against someone who holds a genuine
    callback; set the account's ``webhook_secret_env``/``_file`` for a real secret in
    the callback URL, and :class:`ReplayCache` refuses callbacks sent again. Whatever
    passes is only a hint: genvault polls the id from Akool's API and never takes the
    callback's content as the result. Every failure is a
    :class:`WebhookRejectedError` with a reason that names no secret.
    """
    try:
        env = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejectedError("akool webhook: body is not JSON") from None
    if not isinstance(env, dict):
        raise WebhookRejectedError("akool webhook: body is not a JSON object")
    signature = env.get("signature")
    data_encrypt = env.get("dataEncrypt")
    if not isinstance(signature, str) or not isinstance(data_encrypt, str):
        raise WebhookRejectedError("akool webhook: 'signature' and 'dataEncrypt' are required")
    timestamp = _text(env.get("timestamp"), "timestamp")
    nonce = _text(env.get("nonce"), "nonce")
    expected = callback_signature(client_id, timestamp, nonce, data_encrypt)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8")):
        raise WebhookRejectedError("akool webhook: signature does not verify")
    _check_age(timestamp, max_age_seconds)
    return _decrypt(data_encrypt, api_key, client_id)


def _check_age(timestamp: str, max_age_seconds: int | None) -> None:
    if max_age_seconds is None:
        return
    ms = p.as_int(timestamp)
    if ms is None:
        raise WebhookRejectedError("akool webhook: timestamp is not a number")
    age = time.time() - ms / 1000
    if abs(age) > max_age_seconds:
        raise WebhookRejectedError(
            f"akool webhook: timestamp is {age:.0f} s old (limit {max_age_seconds} s)"
        )


def _decrypt(data_encrypt: str, api_key: str, client_id: str) -> dict[str, Any]:
    try:
        cipher = aes_cipher(api_key, client_id)
    except ValueError as exc:
        raise WebhookRejectedError(f"akool webhook: cannot decrypt: {exc}") from None
    try:
        blob = base64.b64decode(data_encrypt, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejectedError("akool webhook: dataEncrypt is not base64") from None
    if not blob or len(blob) % 16:
        raise WebhookRejectedError("akool webhook: dataEncrypt is not whole AES blocks")
    decryptor = cipher.decryptor()
    padded = decryptor.update(blob) + decryptor.finalize()
    from cryptography.hazmat.primitives import padding

    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        data = json.loads(plain.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):  # bad padding or not JSON: the wrong key
        raise WebhookRejectedError("akool webhook: dataEncrypt does not decrypt") from None
    if not isinstance(data, dict):
        raise WebhookRejectedError("akool webhook: decrypted body is not an object")
    return data


__all__ = [
    "CODES",
    "STATUS_PATH",
    "Akool",
    "AkoolOptions",
    "ReplayCache",
    "ReplayedCallbackError",
    "aes_cipher",
    "callback_signature",
    "code_error",
    "open_callback",
    "parse_item",
    "unwrap",
]
