"""Prometheus metrics: ``/metrics`` and ``run --once --metrics-file``. (Stub: being built.)"""

from __future__ import annotations

from pathlib import Path

from genvault.runtime import Runtime


def write_textfile(rt: Runtime, path: Path) -> None:
    """Write the metrics for node_exporter's textfile collector (atomically)."""
    raise NotImplementedError


def exposition(rt: Runtime, server_counters: dict[str, int]) -> tuple[bytes, str]:
    """The ``/metrics`` body and its content type (Prometheus text format)."""
    raise NotImplementedError
