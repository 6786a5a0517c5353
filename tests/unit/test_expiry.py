"""Deadlines signed into real-shaped media URLs, and picking the earliest deadline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from genvault.expiry import earliest, url_expiry

S3_SIGV4 = (
    "https://genvault-media.s3.us-east-1.amazonaws.com/outputs/2025/10/01/task_123.png"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20251001%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20251001T120000Z"
    "&X-Amz-Expires=3600"
    "&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
)
GCS_V4 = (
    "https://storage.googleapis.com/example-bucket/videos/clip.mp4"
    "?X-Goog-Algorithm=GOOG4-RSA-SHA256"
    "&X-Goog-Credential=signer%40example-project.iam.gserviceaccount.com%2F20251001%2Fauto"
    "%2Fstorage%2Fgoog4_request"
    "&X-Goog-Date=20251001T120000Z"
    "&X-Goog-Expires=900"
    "&X-Goog-SignedHeaders=host"
    "&X-Goog-Signature=3b0e1c4f6a1d2e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f"
)
CLOUDFRONT = (
    "https://d111111abcdef8.cloudfront.net/images/output.jpg"
    "?Expires=1767225600"
    "&Signature=nitfHRCrtziwO2HwPfWw~yYDhUF5EwRunQA-j19DzZrvDh6hQ73lDx~-ar3UocvvRQVw6EkC~GdpGQyy"
    "&Key-Pair-Id=K2JCJMDEHXQW5F"
)
DISCORD = (
    "https://cdn.discordapp.com/attachments/1234567890/9876543210/image.png"
    "?ex=6728831f&is=6727319f&hm=0d5b3b4c2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d&"
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(S3_SIGV4, datetime(2025, 10, 1, 13, 0, tzinfo=UTC), id="s3-sigv4"),
        pytest.param(GCS_V4, datetime(2025, 10, 1, 12, 15, tzinfo=UTC), id="gcs-v4"),
        pytest.param(CLOUDFRONT, datetime(2026, 1, 1, tzinfo=UTC), id="cloudfront"),
        # 0x6728831f == 1730708255
        pytest.param(DISCORD, datetime(2024, 11, 4, 8, 17, 35, tzinfo=UTC), id="discord"),
        pytest.param(
            "https://s3.amazonaws.com/bucket/a.jpg?AWSAccessKeyId=AKIAEXAMPLE"
            "&Expires=1767225600&Signature=abc%2Bdef%3D",
            datetime(2026, 1, 1, tzinfo=UTC),
            id="s3-sigv2",
        ),
    ],
)
def test_signed_url_expiry(url: str, expected: datetime) -> None:
    got = url_expiry(url)
    assert got == expected
    assert got is not None and got.utcoffset() is not None and not got.utcoffset()


def test_parameter_names_are_case_insensitive() -> None:
    url = "https://x.example/a.png?x-amz-date=20251001T120000Z&x-amz-expires=60"
    assert url_expiry(url) == datetime(2025, 10, 1, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.geminigen.ai/images/hist_abc123def456.jpg",
        "https://cdn.example.com/a.mp4?width=512&format=mp4",
        "https://cdn.example.com/a.mp4?X-Amz-Expires=3600",  # no X-Amz-Date: no anchor
        "https://cdn.example.com/a.mp4?X-Amz-Date=20251001T120000Z",  # no X-Amz-Expires
        "",
    ],
)
def test_unsigned_url_has_no_expiry(url: str) -> None:
    assert url_expiry(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://x.example/a.png?X-Amz-Date=garbage&X-Amz-Expires=3600",
        "https://x.example/a.png?X-Amz-Date=20251001T120000Z&X-Amz-Expires=soon",
        "https://x.example/a.png?X-Amz-Date=20251001T120000Z&X-Amz-Expires=99999999999999",
        "https://x.example/a.png?X-Goog-Date=2025-10-01&X-Goog-Expires=900",
        "https://x.example/a.png?Expires=tomorrow",
        "https://x.example/a.png?Expires=99999999999999999999",
        "https://x.example/a.png?Expires=",
        "https://x.example/a.png?ex=zzzz&is=6727319f&hm=00",
        "https://x.example/a.png?ex=ffffffffffffffffffff",
        "https://x.example/a.png?ex=",
        "http://[not-an-ipv6/a.png?ex=6728831f",
        "not a url at all",
    ],
)
def test_garbage_values_give_none(url: str) -> None:
    assert url_expiry(url) is None


def test_several_signatures_give_the_earliest() -> None:
    url = (
        "https://x.example/a.png?X-Amz-Date=20251001T120000Z&X-Amz-Expires=3600"
        "&Expires=1759316400"  # 2025-10-01T11:00:00Z
        "&ex=68dd2a50"  # 0x68dd2a50 == 1759324752 -> 2025-10-01T13:19:12Z
    )
    assert url_expiry(url) == datetime(2025, 10, 1, 11, 0, tzinfo=UTC)


def test_garbage_next_to_a_valid_signature_keeps_the_valid_one() -> None:
    url = "https://x.example/a.png?ex=zzzz&Expires=1767225600"
    assert url_expiry(url) == datetime(2026, 1, 1, tzinfo=UTC)


def test_earliest() -> None:
    a = datetime(2025, 10, 1, 12, tzinfo=UTC)
    b = datetime(2025, 10, 1, 13, tzinfo=UTC)
    assert earliest(b, None, a) == a
    assert earliest(None, b) == b
    assert earliest(None, None) is None
    assert earliest() is None


def test_earliest_of_provider_rule_and_url_signature() -> None:
    provider_rule = datetime(2025, 10, 27, 13, 30, 5, 89000, tzinfo=UTC)
    assert earliest(provider_rule, url_expiry(S3_SIGV4)) == datetime(2025, 10, 1, 13, tzinfo=UTC)
    assert earliest(provider_rule, url_expiry(CLOUDFRONT)) == provider_rule
