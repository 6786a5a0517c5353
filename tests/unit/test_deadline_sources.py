"""Every deadline says where it comes from: the provider, a documented rule, a signed
URL, an assumption where the documents are silent, or genvault's own default.

Read from the providers' documented example payloads (tests/fixtures/seeds), parsed
by the real adapters; the file-level choice (a signed URL that expires first wins) is
:func:`genvault.expiry.file_deadline`, the function the store's write path uses.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from genvault.expiry import file_deadline
from genvault.net.api import ApiClient
from genvault.providers.akool import Akool, AkoolOptions
from genvault.providers.crowdcomputed import CrowdComputed, CrowdComputedOptions, unwrap
from genvault.providers.geminigen import GeminiGen, GeminiGenOptions
from genvault.providers.quickrouter import QuickRouter, QuickRouterOptions
from genvault.providers.tengrai import TengrAI, TengrAIOptions
from genvault.records import DeadlineSource, GenerationRecord, MediaRecord
from tests.records import load_seed

NO_API = cast(ApiClient, None)
S = DeadlineSource


def _geminigen(item: dict[str, Any]) -> GenerationRecord:
    return GeminiGen(NO_API, GeminiGenOptions(), "a").parse(item)


def test_geminigen_expired_at_is_the_providers_word() -> None:
    item = load_seed("geminigen_histories.json")["result"][0]
    assert item["expired_at"]
    assert _geminigen(item).expires_source is S.PROVIDER


def test_geminigen_without_expired_at_is_an_assumption() -> None:
    item = {**load_seed("geminigen_histories.json")["result"][0], "expired_at": None}
    rec = _geminigen(item)
    assert rec.expires_at is not None and rec.expires_source is S.ASSUMED


def test_akool_and_tengrai_apply_their_documented_rules() -> None:
    akool = Akool(NO_API, AkoolOptions(), "a").parse(load_seed("akool_get_result.json"))
    assert akool.expires_source is S.RULE
    artwork = {**load_seed("tengrai_artworks.json")[0], "results": ["https://cdn.tengr.ai/a.png"]}
    tengr = TengrAI(NO_API, TengrAIOptions(), "a").parse(artwork)
    assert tengr.expires_source is S.RULE


def test_crowdcomputed_retention_is_an_assumption() -> None:
    task = unwrap(load_seed("crowdcomputed_status.json"), "query/status")
    rec = CrowdComputed(NO_API, CrowdComputedOptions(), "a").parse(task)
    assert rec.expires_at is not None and rec.expires_source is S.ASSUMED


def test_quickrouter_signed_url_assumed_lifetime_and_stated_expiry() -> None:
    done = datetime(2026, 1, 1, 12, tzinfo=UTC)
    signed_url = (
        "https://bucket.s3.amazonaws.com/v.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Date=20260101T120000Z&X-Amz-Expires=3600&X-Amz-Signature=ab"
    )
    base = {"id": "grok:1", "status": "completed", "status_update_time": int(done.timestamp())}
    qr = QuickRouter(NO_API, QuickRouterOptions(), "a")
    signed = qr.parse({**base, "video_url": signed_url})
    assert signed.expires_source is S.SIGNED_URL
    assert signed.expires_at == done + timedelta(hours=1)
    plain = qr.parse({**base, "video_url": "https://cdn.example/v.mp4"})
    assert plain.expires_source is S.ASSUMED
    stated = qr.parse(
        {**base, "video_url": "https://cdn.example/v.mp4", "expires_at": "2026-01-03T00:00:00Z"}
    )
    assert stated.expires_source is S.PROVIDER


T = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("gen_expires", "gen_source", "url_expires", "want"),
    [
        (None, None, None, (T + timedelta(days=2), "rule")),
        (T + timedelta(days=1), "provider", None, (T + timedelta(days=1), "provider")),
        (
            T + timedelta(days=1),
            "provider",
            T + timedelta(hours=3),
            (T + timedelta(hours=3), S.SIGNED_URL),
        ),
        (
            T + timedelta(hours=1),
            "assumed",
            T + timedelta(hours=3),
            (T + timedelta(hours=1), "assumed"),
        ),
    ],
)
def test_a_files_deadline_is_the_earliest_with_its_source(
    gen_expires: datetime | None, gen_source: str | None, url_expires: datetime | None, want: Any
) -> None:
    gen = SimpleNamespace(created_at=T, expires_at=gen_expires, expires_source=gen_source)
    media = MediaRecord("https://cdn.example/a.png", url_expires_at=url_expires)
    assert file_deadline(gen, media, timedelta(days=2), S.RULE) == want
