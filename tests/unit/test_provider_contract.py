"""What every provider adapter must do, run over every adapter in the registry.

rclone's ``fstests`` is the model: one conformance suite, parametrized over the
backends, instead of a copy per backend. The list of providers is the registry
(:data:`genvault.providers.registry.PROVIDERS`), so a sixth adapter is covered the
moment it is registered. Provider-specific behaviour stays in ``test_<name>_parse.py``.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genvault.errors import MalformedResponseError, WebhookRejectedError
from genvault.net.api import ApiClient
from genvault.providers.base import Provider
from genvault.providers.registry import PROVIDERS, provider_class
from tests.records import check_record
from tests.strategies import JSON_VALUES, WEBHOOK_BODIES

NAMES = sorted(PROVIDERS)

# hypothesis runs a function-scoped fixture once for all examples: fine, adapters are pure
_PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(params=NAMES)
def cls(request: pytest.FixtureRequest) -> type[Provider]:
    return provider_class(request.param)


@pytest.fixture
def adapter(cls: type[Provider]) -> Provider:
    """The adapter with its default options and no network (parse and webhooks need none)."""
    return cls(cast(ApiClient, None), cls.Options(), "acc", api_key="k" * 24)


def test_registered_under_its_name(cls: type[Provider]) -> None:
    assert cls.name in PROVIDERS and provider_class(cls.name) is cls
    assert cls.default_base_url.startswith("https://")
    assert cls.webhook_auth in ("none", "token", "signature")


def test_history_adapters_describe_their_paging(adapter: Provider) -> None:
    if not adapter.has_history:
        assert adapter.streams() == ()
        with pytest.raises(NotImplementedError):
            adapter.fetch_page("all", 0)
        return
    assert adapter.streams() and all(adapter.streams())
    paging = adapter.paging
    assert paging.size >= 1 and paging.first in (0, 1)
    assert paging.params(paging.first)  # the request names its window


@_PROPERTY
@given(payload=JSON_VALUES)
def test_arbitrary_json_only_raises_malformed(adapter: Provider, payload: Any) -> None:
    try:
        rec = adapter.parse(payload)
    except MalformedResponseError:
        return
    check_record(rec)


@_PROPERTY
@given(items=st.lists(JSON_VALUES, max_size=5))
def test_parse_items_counts_what_it_skips(adapter: Provider, items: list[Any]) -> None:
    records, bad = adapter.parse_items(items)
    assert len(records) + bad == len(items)
    for rec in records:
        check_record(rec)


@_PROPERTY
@given(body=WEBHOOK_BODIES, headers=st.dictionaries(st.text(max_size=12), st.text(max_size=30)))
def test_webhook_bodies_only_raise_rejected(
    adapter: Provider, body: bytes, headers: dict[str, str]
) -> None:
    with contextlib.suppress(WebhookRejectedError):
        ids = adapter.webhook_ids(body, {k.lower(): v for k, v in headers.items()})
        assert ids and all(isinstance(i, str) and i for i in ids)


_KEYS = st.from_regex(r"\A[A-Za-z0-9_.-]{8,48}\Z")


@_PROPERTY
@given(key=_KEYS, other=_KEYS)
def test_auth_headers_carry_the_key_and_nothing_else_secret(
    cls: type[Provider], key: str, other: str
) -> None:
    """The key goes on the wire verbatim, in one header; the rest does not depend on it."""
    opts = cls.Options()
    headers = cls.auth_headers(key, opts)
    carrying = [name for name, value in headers.items() if key in value]
    assert len(carrying) == 1
    assert all(key not in name for name in headers)
    if other != key:

        def blank(h: dict[str, str], k: str) -> dict[str, str]:
            return {n: v.replace(k, "<key>") for n, v in h.items()}

        assert blank(headers, key) == blank(cls.auth_headers(other, opts), other)
