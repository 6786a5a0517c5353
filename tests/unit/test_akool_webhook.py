"""Akool webhook bodies: signature first, then age, then AES-CBC decryption.

Bodies are built by the simulator's :func:`encrypt_callback`, which is written
independently of the adapter's decoder, so each round trip checks one against the
other. ``akool_webhook_example.json`` is the example body on docs.akool.com's
webhook page; its clientId and key are not published, so it can only be refused.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genvault.config import NetworkSettings
from genvault.errors import WebhookRejectedError
from genvault.net.api import ApiClient
from genvault.net.policy import NetworkPolicy
from genvault.providers.akool import Akool, AkoolOptions, callback_signature, open_callback
from genvault.simulator.akool import encrypt_callback

SEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "seeds"
KEY = "ak-test-key-abcdefghijkl"  # 24 characters: AES-192, like Akool's keys
CLIENT_ID = "client0123456789"  # 16 characters: the IV
TASK = "662a10df4197b3af58532e89"
PAYLOAD = {"_id": TASK, "status": 3, "type": "image", "url": "https://cdn.example/a.png"}


def _now_ms() -> int:
    return int(time.time() * 1000)


_HTTP = httpx.Client()  # one for the module: building one costs ~20 ms; nothing is sent


def _provider(api_key: str = KEY, **options: Any) -> Akool:
    """A fresh adapter, so each test starts with an empty replay cache."""
    opts = AkoolOptions(**{"client_id": CLIENT_ID, **options})
    api = ApiClient(
        http=_HTTP,
        base_url=Akool.default_base_url,
        auth_headers=Akool.auth_headers(api_key, opts),
        settings=NetworkSettings(),
        policy=NetworkPolicy(),
    )
    return Akool(api, opts, "main", api_key=api_key)


def _body(payload: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "api_key": KEY,
        "client_id": CLIENT_ID,
        "payload": PAYLOAD if payload is None else payload,
        "timestamp": _now_ms(),
        "nonce": "1529",
    }
    args.update(kw)
    return encrypt_callback(**args)


def _resign(body: dict[str, Any], client_id: str = CLIENT_ID) -> dict[str, Any]:
    """Recompute the signature after tampering, as an attacker who knows clientId could."""
    sig = callback_signature(client_id, str(body["timestamp"]), body["nonce"], body["dataEncrypt"])
    return {**body, "signature": sig}


def _ids(body: Any, provider: Akool | None = None) -> list[str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (provider or _provider()).webhook_ids(raw, {"content-type": "application/json"})


def _rejected(body: Any, match: str, provider: Akool | None = None) -> None:
    with pytest.raises(WebhookRejectedError, match=match):
        _ids(body, provider)


# --------------------------------------------------------------------------- accepted


def test_round_trip() -> None:
    assert _ids(_body()) == [TASK]


def test_signature_matches_the_documented_recipe() -> None:
    body = _body(timestamp=1710757981609)
    parts = sorted([CLIENT_ID, "1710757981609", "1529", body["dataEncrypt"]])
    assert body["signature"] == hashlib.sha1("".join(parts).encode()).hexdigest()
    assert body["signature"] == callback_signature(
        CLIENT_ID, "1710757981609", "1529", body["dataEncrypt"]
    )


def test_decrypted_body_is_the_payload() -> None:
    body = json.dumps(_body()).encode()
    got = open_callback(body, api_key=KEY, client_id=CLIENT_ID, max_age_seconds=600)
    assert got == PAYLOAD


@pytest.mark.parametrize("key", ["k" * 16, "k" * 24, "k" * 32])
def test_every_aes_key_size(key: str) -> None:
    assert _ids(_body(api_key=key), _provider(api_key=key)) == [TASK]


def test_timestamp_sent_as_text_is_signed_as_text() -> None:
    stamp = str(_now_ms())
    body = _body()
    body = _resign({**body, "timestamp": stamp})
    assert _ids(body) == [TASK]


def test_timestamp_as_a_whole_float_is_signed_like_javascript() -> None:
    body = _body()
    assert _ids({**body, "timestamp": float(body["timestamp"])}) == [TASK]


def test_uppercase_signature_is_accepted() -> None:
    body = _body()
    assert _ids({**body, "signature": body["signature"].upper()}) == [TASK]


@pytest.mark.parametrize("status", [2, 3, 4])
def test_any_status_names_the_id(status: int) -> None:
    assert _ids(_body({**PAYLOAD, "status": status})) == [TASK]


def test_other_product_types_verify_but_name_nothing() -> None:
    assert _ids(_body({**PAYLOAD, "type": "faceswap"})) == []
    assert _ids(_body({**PAYLOAD, "type": "faceswap"}), _provider(webhook_types=None)) == [TASK]
    no_type = {k: v for k, v in PAYLOAD.items() if k != "type"}
    assert _ids(_body(no_type)) == [TASK]


def test_age_check_can_be_switched_off() -> None:
    old = _body(timestamp=_now_ms() - 86_400_000)
    assert _ids(old, _provider(webhook_max_age_seconds=None)) == [TASK]


# --------------------------------------------------------------------------- replays


def test_a_replayed_callback_is_refused_within_the_window() -> None:
    """Issue item 14: the signature is no secret, so a captured callback could be sent
    again, as is or re-signed with a fresh nonce and timestamp. Within the age window
    the adapter remembers every nonce (with its timestamp) and every ciphertext."""
    clock = [1000.0]
    provider = _provider(webhook_max_age_seconds=600)
    provider.replays.clock = lambda: clock[0]
    body = _body()
    assert _ids(body, provider) == [TASK]
    _rejected(body, "replayed", provider)
    fresh = _resign({**body, "nonce": "7781", "timestamp": _now_ms() + 1})
    _rejected(fresh, "replayed", provider)  # the same ciphertext under a new nonce
    other = _body({**PAYLOAD, "status": 4}, nonce="7781")
    assert _ids(other, provider) == [TASK], "another callback: new nonce, new ciphertext"
    _rejected(
        _body({**PAYLOAD, "status": 2}, nonce="7781", timestamp=other["timestamp"]),
        "replayed",
        provider,
    )  # a nonce (and timestamp) already used

    clock[0] += 2 * 600 + 1  # beyond any timestamp the age check still lets through
    assert _ids(fresh, provider) == [TASK], "entries expire with the window"


def test_a_forged_body_never_enters_the_replay_cache() -> None:
    """Only callbacks that decrypt are remembered: a forger who signs garbage with a
    nonce Akool will use later must not get the real callback refused."""
    provider = _provider()
    real = _body(nonce="4242")
    forged = _resign({**real, "dataEncrypt": base64.b64encode(b"x" * 32).decode()})
    _rejected(forged, "does not decrypt", provider)
    assert _ids(real, provider) == [TASK]


# --------------------------------------------------------------------------- refused


def test_no_client_id_configured() -> None:
    _rejected(_body(), "akool webhooks need client_id", _provider(client_id=None))


def test_bad_signature() -> None:
    body = _body()
    _rejected({**body, "signature": "0" * 40}, "signature does not verify")
    _rejected({**body, "signature": ""}, "signature does not verify")
    _rejected({**body, "signature": "é" * 40}, "signature does not verify")


@pytest.mark.parametrize(
    "field, value",
    [("nonce", "1530"), ("timestamp", 1), ("dataEncrypt", "AAAA" * 8)],
)
def test_tampered_fields_break_the_signature(field: str, value: Any) -> None:
    _rejected({**_body(), field: value}, "signature does not verify")


def test_wrong_client_id_breaks_the_signature() -> None:
    _rejected(_body(client_id="another-client-1"), "signature does not verify")


def test_wrong_key() -> None:
    # A correct signature (it does not involve the key), but encrypted with another key.
    _rejected(_body(api_key="another-key-abcdefghijkl"), "does not decrypt")


def test_key_that_cannot_be_an_aes_key() -> None:
    _rejected(_body(), "cannot decrypt: the API key is 21 bytes", _provider(api_key="k" * 21))


def test_client_id_that_cannot_be_an_iv() -> None:
    body = _resign(_body(), "short")
    _rejected(body, "IV must be 16", _provider(client_id="short"))


@pytest.mark.parametrize("age_s", [601, 3600, -3600])
def test_stale_or_future_timestamp(age_s: int) -> None:
    _rejected(_body(timestamp=_now_ms() - age_s * 1000), "timestamp is -?[0-9]+ s old")


def test_stale_check_runs_after_the_signature() -> None:
    old = _body(timestamp=_now_ms() - 3_600_000)
    _rejected({**old, "signature": "0" * 40}, "signature does not verify")


def test_custom_max_age() -> None:
    body = _body(timestamp=_now_ms() - 30_000)
    assert _ids(body) == [TASK]
    _rejected(body, "limit 10 s", _provider(webhook_max_age_seconds=10))


def test_timestamp_that_is_not_a_number() -> None:
    _rejected(_resign({**_body(), "timestamp": "yesterday"}), "timestamp is not a number")


@pytest.mark.parametrize("garbage", ["!!!not base64!!!", "QUJD", "QUJDRA=", "", "ü" * 8])
def test_garbage_base64(garbage: str) -> None:
    _rejected(
        _resign({**_body(), "dataEncrypt": garbage}),
        "not base64|not whole AES blocks",
    )


def test_decrypts_to_something_that_is_not_json() -> None:
    body = _resign({**_body(), "dataEncrypt": base64.b64encode(b"\x00" * 32).decode()})
    _rejected(body, "does not decrypt")


@pytest.mark.parametrize(
    ("payload", "match"),
    [({"status": 3, "type": "image"}, "no _id"), ({"_id": "", "type": "image"}, "no _id")],
)
def test_decrypted_body_without_id(payload: dict[str, Any], match: str) -> None:
    _rejected(_body(payload), match)


def test_decrypted_body_that_is_not_an_object() -> None:
    padder = padding.PKCS7(128).padder()
    plain = padder.update(b"[1,2]") + padder.finalize()
    enc = Cipher(algorithms.AES(KEY.encode()), modes.CBC(CLIENT_ID.encode())).encryptor()
    blob = enc.update(plain) + enc.finalize()
    _rejected(_resign({**_body(), "dataEncrypt": base64.b64encode(blob).decode()}), "not an object")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'"x"', "not a JSON object"),
        (b"{}", "are required"),
        (b'{"signature": 1, "dataEncrypt": "x"}', "are required"),
        (b'{"signature": "a", "dataEncrypt": "x", "nonce": "1"}', "'timestamp' is missing"),
        (b'{"signature": "a", "dataEncrypt": "x", "timestamp": 1}', "'nonce' is missing"),
        (b'{"signature": "a", "dataEncrypt": "x", "timestamp": true, "nonce": "1"}', "timestamp"),
        (b'{"signature": "a", "dataEncrypt": "x", "timestamp": 1.5, "nonce": "1"}', "timestamp"),
    ],
)
def test_unreadable_bodies(raw: bytes, match: str) -> None:
    _rejected(raw, match)


def test_the_docs_example_is_refused_without_its_secrets() -> None:
    example = (SEEDS / "akool_webhook_example.json").read_bytes()
    assert set(json.loads(example)) == {"signature", "dataEncrypt", "timestamp", "nonce"}
    _rejected(example, "signature does not verify")


def test_errors_never_contain_the_key() -> None:
    for body in (_body(api_key="another-key-abcdefghijkl"), {**_body(), "signature": "x"}):
        with pytest.raises(WebhookRejectedError) as info:
            _ids(body)
        assert KEY not in str(info.value)


# --------------------------------------------------------------------------- property

_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "signature": st.text(max_size=42) | st.integers(),
        "dataEncrypt": st.text(max_size=40) | st.none(),
        "timestamp": st.integers() | st.floats() | st.text(max_size=14) | st.booleans(),
        "nonce": st.text(max_size=6) | st.integers() | st.none(),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64) | _SHAPED.map(lambda d: json.dumps(d).encode()))
def test_arbitrary_bodies_only_raise_webhook_rejected(raw: bytes) -> None:
    with contextlib.suppress(WebhookRejectedError):
        _ids(raw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=80))
def test_validly_signed_random_ciphertext_only_raises_webhook_rejected(blob: bytes) -> None:
    body = _resign({**_body(), "dataEncrypt": base64.b64encode(blob).decode()})
    with contextlib.suppress(WebhookRejectedError):
        _ids(body)
