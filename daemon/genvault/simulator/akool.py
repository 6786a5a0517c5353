"""Simulator of Akool's image "Get Image Result" API, its webhooks and its fake CDN.

Follows seed 002 (Akool "Get Image Result") and providers.md §3 field by field:

* ``GET /api/open/v3/content/image/infobymodelid?image_model_id=<_id>`` answers
  ``{"code": 1000, "msg": "OK", "data": {...}}`` with the seed example's keys, and
  HTTP 200 ``{"code": <business code>, "msg": ...}`` for errors: 1101 for a wrong
  key or token (knob ``auth_error_status=401`` answers HTTP 401 instead), 1102 for
  none, 1003 for a missing id, 1008 for an unknown id;
* auth by ``x-api-key`` or ``Authorization: Bearer <token>``; when both are sent
  the Authorization header decides, as Akool documents;
* ``POST /api/open/v3/getToken`` with ``{"clientId", "clientSecret"}`` returns
  ``{"code": 1000, "token": ...}``;
* ids are 24-hex Mongo ObjectIds whose first 4 bytes are the creation second;
  ``create_time`` is Unix milliseconds.

There is no listing, so tests learn the ids from :attr:`AkoolSimulator.task_ids` (the
truth) and hand them to ``genvault track``, or receive them in a webhook body built
by :meth:`AkoolSimulator.callback_for` (signed and AES-encrypted like Akool's).
Deterministic for a seed. Traps for the archiver:

* the newest ``processing_count`` tasks go 1 (queued) -> 2 (processing) -> 3 over
  ``processing_seconds`` after server start, and one of them ends in 4 (failed)
  when ``failed_count`` > 0; before status 3 ``image`` is ``""``;
* ``upscaled_count`` tasks have U-button results in ``upscaled_urls``; with
  ``signed_upscales`` those URLs carry a CloudFront-style ``Expires=`` an hour
  before the 7-day retention ends, and the CDN enforces it;
* every file answers 403 from ``create_time`` + 7 days; ``expired_count`` tasks were
  created 8-10 days ago, so their files are already gone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from genvault.simulator import media
from genvault.simulator.base import (
    ExpectedFile,
    ProviderSim,
    Role,
    check_non_negative,
    config_from_knobs,
    expected_file,
)
from genvault.simulator.messages import Request, Response

API_PATH: Final = ""
STATUS_PATH: Final = "/api/open/v3/content/image/infobymodelid"
TOKEN_PATH: Final = "/api/open/v3/getToken"
CDN: Final = "/cdn/"
RETENTION: Final = timedelta(days=7)
SIGNED_MARGIN: Final = timedelta(hours=1)
BUTTONS: Final = ("U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4")
KEY_PAIR_ID: Final = "K2JCJMDEHXQW5F"

MSG_AUTH: Final = "Invalid authorization or The request token has expired"
MSG_NO_AUTH: Final = "Authorization cannot be empty"
MSG_PARAM: Final = "Parameter error"
MSG_NOT_FOUND: Final = "The content you get does not exist"


@dataclass(frozen=True, slots=True)
class AkoolSimConfig:
    """Knobs of the Akool simulator. Counts larger than ``count`` are clamped."""

    api_key: str = "sim-akool-key-0123456789"
    """24 characters, like Akool's keys: the AES-192 key of the webhook bodies."""
    client_id: str = ""
    """16 characters (the AES IV); empty = derived from the seed."""
    count: int = 20
    seed: int = 0
    image_size: int = 150_000
    upscale_size: int = 300_000
    processing_count: int = 3
    processing_seconds: float = 2.0
    failed_count: int = 2
    upscaled_count: int = 4
    expired_count: int = 0
    signed_upscales: bool = True
    auth_error_status: int = 200
    """HTTP status of the 1101/1102 answers: Akool's 200, or 401 to test that path."""
    port: int = 0
    clock_anchor: datetime | None = None
    """Pretend the simulation starts at this instant (reproducible timestamps)."""

    def __post_init__(self) -> None:
        check_non_negative(self)
        if self.auth_error_status not in (200, 401, 403):
            raise ValueError("auth_error_status must be 200, 401 or 403")
        if self.client_id and len(self.client_id.encode()) != 16:
            raise ValueError("client_id must be 16 bytes (it is the AES IV)")


@dataclass(frozen=True, slots=True)
class _File:
    """One media file on the fake CDN; ``signed_until`` adds an ``Expires=`` query."""

    path: str
    size: int
    role: Role
    source_field: str
    expires_at: datetime
    signed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Task:
    """One image job with its time-independent facts; status is derived at request time."""

    id: str
    created_at: datetime
    credit: int
    processing: bool
    failed: bool
    image: _File | None
    upscales: tuple[_File, ...]

    @property
    def create_ms(self) -> int:
        return int(self.created_at.timestamp() * 1000)

    def files(self) -> list[_File]:
        return ([self.image] if self.image else []) + list(self.upscales)


class _Builder:
    """Builds the deterministic task list from a seeded RNG."""

    def __init__(self, cfg: AkoolSimConfig, now: datetime) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"akool:{cfg.seed}")
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self.counter = self.rng.getrandbits(24)
        self.machine = self.rng.getrandbits(40)

    def object_id(self, created: datetime) -> str:
        """A Mongo ObjectId: 4-byte seconds, 5-byte machine/process, 3-byte counter."""
        self.counter = (self.counter + 1) % (1 << 24)
        return f"{int(created.timestamp()):08x}{self.machine:010x}{self.counter:06x}"

    def build(self) -> list[_Task]:
        cfg, r = self.cfg, self.rng
        n = cfg.count
        n_proc = min(cfg.processing_count, n)
        n_exp = min(cfg.expired_count, n - n_proc)
        ages = (
            [5.0 + 7.0 * i + r.random() for i in range(n_proc)]
            + sorted(r.uniform(120.0, 6 * 86_400.0) for _ in range(n - n_proc - n_exp))
            + sorted(r.uniform(8 * 86_400.0, 10 * 86_400.0) for _ in range(n_exp))
        )
        failed: set[int] = set()
        if cfg.failed_count and n_proc:
            failed.add(n_proc - 1)  # one task visibly goes 1 -> 2 -> 4
        rest = list(range(n_proc, n - n_exp))
        failed |= set(r.sample(rest, min(cfg.failed_count - len(failed), len(rest))))
        done_ok = [i for i in range(n_proc, n) if i not in failed]
        upscaled = set(r.sample(done_ok, min(cfg.upscaled_count, len(done_ok))))
        return [self.task(i, ages[i], i < n_proc, i in failed, i in upscaled) for i in range(n)]

    def task(self, i: int, age: float, processing: bool, failed: bool, upscaled: bool) -> _Task:
        cfg, r = self.cfg, self.rng
        created = self.now - timedelta(milliseconds=round(age * 1000))
        tid = self.object_id(created)
        expires = created + RETENTION
        image: _File | None = None
        ups: list[_File] = []
        if not failed:
            image = _File(f"{CDN}image/{tid}.jpg", cfg.image_size, "result", "data.image", expires)
        if upscaled:
            signed: datetime | None = None
            if cfg.signed_upscales:  # whole seconds: an Expires= query cannot say more
                signed = (expires - SIGNED_MARGIN).replace(microsecond=0)
            for button in sorted(r.sample(("U1", "U2", "U3", "U4"), r.randint(1, 2))):
                ups.append(
                    _File(
                        f"{CDN}upscale/{tid}_{button}.jpg",
                        cfg.upscale_size,
                        "upscale",
                        "data.upscaled_urls[]",
                        signed or expires,
                        signed,
                    )
                )
        return _Task(
            id=tid,
            created_at=created,
            credit=r.choice((1, 2, 2, 4)),
            processing=processing,
            failed=failed,
            image=image,
            upscales=tuple(ups),
        )


def _business_error() -> Response:
    """``malformed="business_error"``: a non-1000 business code in HTTP 200, as documented."""
    return Response.json({"code": 1108, "msg": "image generate error"})


def _error(status: int, code: str, message: str) -> Response:
    """Akool's error shape for non-business failures (faults, unknown routes)."""
    return Response.json({"code": status, "msg": message}, status=status)


def _mangle(value: Any) -> Any:
    """``wrong_types`` fault: numbers become strings and empty lists null, recursively."""
    if isinstance(value, dict):
        return {k: _mangle(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mangle(v) for v in value] or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def encrypt_callback(
    api_key: str, client_id: str, payload: dict[str, Any], timestamp: int, nonce: str
) -> dict[str, Any]:
    """The body Akool POSTs to a ``webhookUrl``: ``payload`` AES-encrypted and signed.

    ``dataEncrypt = base64(AES-CBC(key=api_key, iv=client_id, PKCS#7(json)))`` (a
    24-character key is AES-192) and ``signature = sha1(sorted([clientId, timestamp,
    nonce, dataEncrypt]).join(""))``. Written independently of the adapter's decoder,
    so a round trip checks one against the other.
    """
    key, iv = api_key.encode("utf-8"), client_id.encode("utf-8")
    if len(key) not in (16, 24, 32) or len(iv) != 16:
        raise ValueError("AES needs a 16/24/32-byte API key and a 16-byte client_id")
    padder = padding.PKCS7(128).padder()
    plain = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    data_encrypt = base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()
    parts = sorted([client_id, str(timestamp), nonce, data_encrypt])
    signature = hashlib.sha1("".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()
    return {
        "signature": signature,
        "dataEncrypt": data_encrypt,
        "timestamp": timestamp,
        "nonce": nonce,
    }


class AkoolSimulator(ProviderSim[AkoolSimConfig]):
    """The Akool image result API on loopback. Use :func:`create` or pass a config."""

    name = "akool"
    api_path = API_PATH
    media_prefixes = (CDN,)
    error_response = _error
    wrong_types = _mangle
    business_error = _business_error

    def __init__(self, config: AkoolSimConfig | None = None) -> None:
        super().__init__(config or AkoolSimConfig())
        cfg, server = self.config, self.server
        derived = hashlib.sha256(f"akool-client:{cfg.seed}".encode()).hexdigest()
        self.client_id: str = cfg.client_id or derived[:16]
        self.token: str = hashlib.sha256(
            f"akool-token:{cfg.seed}:{cfg.api_key}".encode()
        ).hexdigest()
        self._tasks = _Builder(cfg, server.clock.now()).build()
        self._by_id = {t.id: t for t in self._tasks}
        for t in self._tasks:
            delay = cfg.processing_seconds if t.processing else 0.0
            for f in t.files():
                server.add_media(
                    f.path, self._spec(f), expires_at=f.expires_at, available_after_s=delay
                )
        server.route("GET", STATUS_PATH, self._status, name="infobymodelid")
        server.route("POST", TOKEN_PATH, self._get_token, name="getToken")

    @property
    def account_options(self) -> dict[str, Any]:
        """``client_id``: needed to verify and decrypt this simulator's webhooks."""
        return {"client_id": self.client_id}

    # ------------------------------------------------------------------ truth for tests

    @property
    def task_ids(self) -> list[str]:
        """Every task id, newest first: what a submitter would hand to ``genvault track``."""
        return [t.id for t in self._tasks]

    @property
    def failed_ids(self) -> list[str]:
        """Tasks that are or will be ``image_status`` 4."""
        return [t.id for t in self._tasks if t.failed]

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task's ``data`` object as the API would return it right now."""
        return [self._render(t) for t in self._tasks]

    def expected_media(self) -> list[ExpectedFile]:
        """Every media URL of every task that is or will be ``image_status`` 3."""
        return [
            expected_file(
                self._url(f),
                self._spec(f),
                role=f.role,
                generation_id=t.id,
                expires_at=f.expires_at,
                source_field=f.source_field,
            )
            for t in self._tasks
            for f in t.files()
        ]

    def _spec(self, f: _File) -> media.MediaSpec:
        return media.MediaSpec(f"akool/{self.config.seed}{f.path}", f.size, "image")

    def callback_for(
        self,
        task_id: str,
        client_id: str | None = None,
        *,
        timestamp_ms: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """The webhook body Akool would send for ``task_id`` now (signed, encrypted).

        ``timestamp_ms`` defaults to the real wall clock (receivers reject stale
        callbacks), ``client_id`` to this simulator's.
        """
        t = self._by_id[task_id]
        status = max(2, self._status_code(t))  # callbacks report 2, 3 or 4
        image = self._url(t.image) if status == 3 and t.image else ""
        payload = {"_id": t.id, "status": status, "type": "image", "url": image}
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        if nonce is None:
            nonce = str(random.Random(f"{task_id}:{stamp}").randint(1000, 9999))
        return encrypt_callback(self.api_key, client_id or self.client_id, payload, stamp, nonce)

    # ------------------------------------------------------------------ rendering

    def _url(self, f: _File) -> str:
        url = self.server.url(f.path)
        if f.signed_until is None:
            return url
        expires = int(f.signed_until.timestamp())
        sig = hashlib.sha1(f"{f.path}:{expires}".encode(), usedforsecurity=False).hexdigest()
        return f"{url}?Expires={expires}&Signature={sig}&Key-Pair-Id={KEY_PAIR_ID}"

    def _status_code(self, t: _Task) -> int:
        """``image_status`` at the current clock: 1 -> 2 -> 3 (or 4) for processing tasks."""
        if not t.processing:
            return 4 if t.failed else 3
        wait = self.config.processing_seconds
        elapsed = self.clock.elapsed()
        if elapsed < wait / 2:
            return 1
        if elapsed < wait:
            return 2
        return 4 if t.failed else 3

    def _render(self, t: _Task) -> dict[str, Any]:
        status = self._status_code(t)
        done = status == 3
        used = [f.path.rsplit("_", 1)[-1].removesuffix(".jpg") for f in t.upscales]
        return {
            "faceswap_quality": 2,
            "deduction_credit": t.credit,
            "buttons": list(BUTTONS) if done else [],
            "used_buttons": used if done else [],
            "upscaled_urls": [self._url(f) for f in t.upscales] if done else [],
            "_id": t.id,
            "create_time": t.create_ms,
            "uid": 378_000 + self.config.seed % 1000,
            "type": 3,
            "image_status": status,
            "image": self._url(t.image) if done and t.image else "",
        }

    # ------------------------------------------------------------------ routes

    def _code(self, code: int, msg: str, status: int = 200) -> Response:
        return Response.json({"code": code, "msg": msg}, status=status)

    def _auth_error(self, req: Request) -> Response | None:
        """None when authorized; Authorization (when sent) decides over x-api-key."""
        status = self.config.auth_error_status
        auth = req.headers.get("authorization", "").strip()
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer" and token.strip() == self.token:
                return None
            return self._code(1101, MSG_AUTH, status)
        key = req.headers.get("x-api-key", "").strip()
        if not key:
            return self._code(1102, MSG_NO_AUTH, status)
        return None if key == self.api_key else self._code(1101, MSG_AUTH, status)

    def _status(self, req: Request) -> Response:
        denied = self._auth_error(req)
        if denied is not None:
            return denied
        task_id = req.query.get("image_model_id", "").strip()
        if not task_id:
            return self._code(1003, MSG_PARAM)
        t = self._by_id.get(task_id)
        if t is None:
            return self._code(1008, MSG_NOT_FOUND)
        return Response.json({"code": 1000, "msg": "OK", "data": self._render(t)})

    def _get_token(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("clientId") or not body.get("clientSecret"):
            return self._code(1003, MSG_PARAM)
        if body["clientId"] != self.client_id or body["clientSecret"] != self.api_key:
            return self._code(1101, MSG_AUTH)
        return Response.json({"code": 1000, "token": self.token})


def create(
    *, api_key: str | None = None, seed: int = 0, count: int | None = None, **knobs: Any
) -> AkoolSimulator:
    """Uniform factory used by the simulator registry; knobs are AkoolSimConfig fields."""
    return AkoolSimulator(
        config_from_knobs(AkoolSimConfig, api_key=api_key, seed=seed, count=count, knobs=knobs)
    )


__all__ = [
    "STATUS_PATH",
    "TOKEN_PATH",
    "AkoolSimConfig",
    "AkoolSimulator",
    "create",
    "encrypt_callback",
]
