"""docs/architecture.md matches the code: every module is named there, and every
module it names exists. A new module without its line fails here, so the map of the
house never falls behind the house."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "daemon" / "genvault"


def _modules() -> set[str]:
    return {
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*.py")
        if "migrations/versions" not in p.as_posix()
    }


def _named() -> set[str]:
    return set(re.findall(r"`(genvault/[\w/]+\.py)`", DOC.read_text(encoding="utf-8")))


def test_every_module_has_its_line() -> None:
    missing = sorted(_modules() - _named())
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_every_module_named_exists() -> None:
    gone = sorted(_named() - _modules())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
