"""The benchmarks at smoke size, so they cannot rot: ``python -m bench --smoke`` in CI.

Every benchmark of ``bench.core.BENCHMARKS`` runs as a human would run it,
``python -m bench --smoke --json FILE`` from the repository root, against real
simulators, a real S3 server and a real PostgreSQL. Each must report every ratio
its module promises in ``RATIOS``, with finite positive values. Targets are not checked: smoke sizes
prove that a benchmark runs end to end, not what it measures.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.core import BENCHMARKS

REPO = Path(__file__).resolve().parents[2]


def promised_ratios(name: str) -> tuple[str, ...]:
    """The ratio labels a benchmark module declares in ``RATIOS``."""
    return tuple(importlib.import_module(f"bench.{name}").RATIOS)


def check_result(name: str, result: dict[str, Any]) -> None:
    assert result["scale"] == "smoke", name
    labels = [r["label"] for r in result["ratios"]]
    expected = promised_ratios(name)
    assert expected, f"bench/{name}.py declares no RATIOS"
    missing = sorted(set(expected) - set(labels))
    assert not missing, f"{name} did not report {missing}; got {labels}"
    for ratio in result["ratios"]:
        value = ratio["value"]
        assert math.isfinite(value) and value > 0, f"{name}: {ratio}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    names = list(BENCHMARKS)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=870,
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert sorted(results) == sorted(names), proc.stdout[-4000:]
    for name in names:
        check_result(name, results[name])
