"""``genvault run --once --dry-run``: what a pass would fetch and archive, writing nothing."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import SecretStr

from genvault.config import Settings


def dry_run(
    settings: Settings, secrets: dict[str, SecretStr], *, echo: Callable[[str], None]
) -> int:
    """Print the plan; return the exit code. (Stub: being built.)"""
    raise NotImplementedError
