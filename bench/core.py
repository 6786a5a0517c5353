"""The shape of a benchmark and of what it reports.

A benchmark is a module in ``bench/`` with ``NAME``, ``TITLE`` and
``run(scale: Scale) -> Result``; :data:`BENCHMARKS` lists them in report order.
``run`` starts whatever it needs (simulators, S3 server, PostgreSQL), measures,
tears everything down, and returns figures and ratios. Ratios carry their target
so the report can say which targets were met; nothing here fails on a miss.
"""

from __future__ import annotations

import enum
import json
import os
import platform
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Protocol


class Scale(enum.Enum):
    """How big a run is: the issue's sizes, or a CI smoke size that only proves it runs."""

    FULL = "full"
    SMOKE = "smoke"


@dataclass(frozen=True)
class Figure:
    """One measured number, e.g. ("genvault", 212.4, "MB/s")."""

    label: str
    value: float
    unit: str = ""


@dataclass(frozen=True)
class Ratio:
    """A comparison with its target: ``value >= target`` (or ``<=`` when ``at_most``)."""

    label: str
    value: float
    target: float | None = None
    at_most: bool = False

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value <= self.target if self.at_most else self.value >= self.target


@dataclass
class Result:
    name: str
    title: str
    scale: Scale
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def figure(self, label: str, value: float, unit: str = "") -> None:
        self.figures.append(Figure(label, value, unit))

    def ratio(
        self, label: str, value: float, target: float | None = None, *, at_most: bool = False
    ) -> None:
        self.ratios.append(Ratio(label, value, target, at_most))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["scale"] = self.scale.value
        d["ratios"] = [{**asdict(r), "met": r.met} for r in self.ratios]
        return d


class Benchmark(Protocol):
    NAME: str
    TITLE: str

    def run(self, scale: Scale) -> Result: ...


BENCHMARKS: tuple[str, ...] = (
    "throughput",  # 1. raw loopback throughput vs rclone and a bare httpx -> boto3 pipeline
    "local",  # 1b. raw loopback into a local folder vs rclone (+ syncfs) and a bare script
    "network",  # 2. provider-like network: 150 ms first byte, 4 MB/s per connection
    "memory",  # 3. peak RSS archiving a 2 GB video vs a 20 MB file
    "metadata",  # 4. history sync of 100,000 generations into SQLite and PostgreSQL
    "deadlines",  # 5. earliest-deadline-first vs FIFO losses
    "scaleout",  # 6. 1 vs 3 replicas on PostgreSQL
    "search",  # 7. full-text search over 1,000,000 generations, SQLite and PostgreSQL
    "walk",  # 8. listing requests of the self-checking walk and the daily full walk
    "startup",  # 9. a nothing-to-do `run --once`: start-up time (issue 14)
)


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_1m": round(os.getloadavg()[0], 2),
    }


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = [0.0]
    started = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - started


def peak_rss_children_mb() -> float:
    """Peak RSS of the largest waited-for child process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def render(results: list[Result]) -> str:
    """The plain-text report printed by ``python -m bench``."""
    lines: list[str] = []
    for r in results:
        lines.append(f"== {r.name}: {r.title} [{r.scale.value}, {r.seconds:.1f} s]")
        for f in r.figures:
            lines.append(f"   {f.label:<52} {f.value:>12.2f} {f.unit}")
        for q in r.ratios:
            if q.target is None:
                verdict = ""
            else:
                sign = "<=" if q.at_most else ">="
                verdict = f"  target {sign} {q.target:g}: {'met' if q.met else 'NOT MET'}"
            lines.append(f"   ratio {q.label:<46} {q.value:>12.2f}{verdict}")
        for n in r.notes:
            lines.append(f"   note: {n}")
    return "\n".join(lines)


def dump(results: list[Result]) -> str:
    return json.dumps({"machine": machine(), "results": [r.as_dict() for r in results]}, indent=2)
