"""``python -m bench [--smoke] [--json FILE] [NAME ...]``: run the benchmarks, print figures."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.core import BENCHMARKS, Result, Scale, dump, machine, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[[], *BENCHMARKS],
        metavar="NAME",
        help=f"which to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves they run (CI)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    scale = Scale.SMOKE if args.smoke else Scale.FULL
    names = args.names or list(BENCHMARKS)
    print(f"machine: {machine()}", flush=True)
    results: list[Result] = []
    failed = 0
    for name in names:
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            result: Result = module.run(scale)
        except Exception as exc:  # report it and go on with the others
            failed += 1
            traceback.print_exc()
            print(f"== {name}: FAILED: {exc!r}", flush=True)
            continue
        result.seconds = time.perf_counter() - started
        results.append(result)
        print(render([result]), flush=True)
    if args.json:
        args.json.write_text(dump(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
