"""Run one simulator in the foreground: ``python -m genvault.simulator geminigen``.

Tests that run genvault as a subprocess, and humans trying the daemon, need a
simulator in its own process. The first line on stdout is the base URL (so a parent
process can read it and then steer the simulator through ``/_sim/...``); everything
else goes to stderr. Serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from genvault.simulator import SIMULATORS, simulator_factory


def _knob(text: str) -> tuple[str, Any]:
    """Parse ``name=value``; the value is JSON if it parses (numbers, bools), else a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m genvault.simulator", description="Serve a provider API simulator."
    )
    parser.add_argument("provider", choices=sorted(SIMULATORS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--count", type=int, default=None, help="number of generations")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        dest="knobs",
        action="append",
        type=_knob,
        default=[],
        metavar="NAME=VALUE",
        help="provider knob, e.g. --set processing_seconds=10 (repeatable)",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        type=_knob,
        default=[],
        metavar="NAME=VALUE",
        help="initial fault, e.g. --fault error_rate=0.1 (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sim = simulator_factory(args.provider)(
            api_key=args.api_key,
            seed=args.seed,
            count=args.count,
            port=args.port,
            **dict(args.knobs),
        )
        sim.faults.update(**dict(args.faults))
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        base_url = sim.start()
        print(base_url, flush=True)
        print(
            f"{args.provider} simulator: api_base={sim.api_base} api_key={sim.api_key} "
            f"admin={base_url}/_sim/faults",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
