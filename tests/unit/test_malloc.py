"""``pin_mmap_threshold``: applied on glibc, and an operator's own setting wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from genvault.malloc import DEFAULT_THRESHOLD, OPERATOR_ENV

_PROBE = "from genvault.malloc import pin_mmap_threshold; print(pin_mmap_threshold())"


def _pin(env: dict[str, str]) -> str:
    # A fresh interpreter: the setting is process-wide and must not leak into this one.
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_threshold_is_pinned_on_linux() -> None:
    env = {k: v for k, v in os.environ.items() if k != OPERATOR_ENV}
    assert _pin(env) == "True"


def test_an_operators_malloc_setting_is_left_alone() -> None:
    assert _pin({**os.environ, OPERATOR_ENV: str(1 << 20)}) == "False"


def test_parts_get_their_own_mapping_and_images_do_not() -> None:
    # multipart parts are 5 MiB at the least; a 1 MB image body stays in the heap
    assert 1_000_000 < DEFAULT_THRESHOLD <= 5 * 1024 * 1024
