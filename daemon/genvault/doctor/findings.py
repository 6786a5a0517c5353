"""What ``genvault doctor`` says: findings per check, per account, and the verdict."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from genvault.logs import scrub


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    """Works, but not as well as it could (a page cap, an unsorted listing, clock skew)."""
    FAIL = "fail"
    """A sync would fail or miss something until the config (or the clock) is changed."""
    SKIP = "skip"
    """The check could not be made (too few items, an earlier failure, out of time)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict, in words, with the config key concerned and the line to set."""

    check: str
    level: Level
    message: str
    key: str | None = None
    """The config key the finding is about, e.g. ``accounts[main].api_key_env``."""
    suggest: str | None = None
    """A config line that fixes it, e.g. ``accounts[main].paging_params = "camel"``."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "level": self.level.value,
            "message": scrub(self.message),
            "key": self.key,
            "suggest": self.suggest,
        }


@dataclass
class AccountReport:
    account: str
    provider: str
    base_url: str
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    """What the probes learned, for machines: header style, paging, cap, order, skew."""
    requests: int = 0
    """API and media requests made (retries included)."""
    seconds: float = 0.0

    def add(
        self,
        check: str,
        level: Level,
        message: str,
        *,
        key: str | None = None,
        suggest: str | None = None,
    ) -> Finding:
        finding = Finding(check, level, message, key, suggest)
        self.findings.append(finding)
        return finding

    @property
    def ok(self) -> bool:
        return not any(f.level is Level.FAIL for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.level is Level.WARN for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "provider": self.provider,
            "base_url": self.base_url,
            "ok": self.ok,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "findings": [f.as_dict() for f in self.findings],
            "facts": self.facts,
        }


@dataclass
class DoctorReport:
    accounts: list[AccountReport] = field(default_factory=list)

    def passed(self, *, strict: bool = False) -> bool:
        """Every account passes: no failure (and with ``strict``, no warning either)."""
        return all(a.ok and not (strict and a.warnings) for a in self.accounts)

    def as_dict(self, *, strict: bool = False) -> dict[str, Any]:
        return {
            "ok": self.passed(strict=strict),
            "accounts": [a.as_dict() for a in self.accounts],
        }


__all__ = ["AccountReport", "DoctorReport", "Finding", "Level"]
