"""cProfile of a whole program, **every thread included**: ``python -m bench.cprofile_threads``.

``python -m cProfile`` profiles the main thread only, and genvault moves its bytes in
the archive pool's threads. This wrapper gives every thread started after it loads
its own ``cProfile.Profile`` (``threading.Thread.run`` is wrapped), runs the target
module as ``__main__``, and at exit (``sys.exit`` included) merges all of them into one
``.prof`` file plus two ``pstats`` text reports, by cumulative and by own time.

    python -m bench.cprofile_threads OUT_PREFIX -m genvault.cli --config C run --once

writes ``OUT_PREFIX.prof``, ``OUT_PREFIX.cumulative.txt`` and ``OUT_PREFIX.tottime.txt``.
The clock is ``time.thread_time``: each thread's own **CPU time**, so a thread waiting
for the GIL, a lock, the disk (``fsync``) or the socket is not charged, and the times of
all threads add up to the process's CPU. Deterministic profiling makes every Python
call several times dearer (Python-heavy code is inflated far more than C calls such as
``sha256.update`` or ``write``); the call **counts** are exact (reads per file, bytes
per read, fsyncs, commits, log lines). Use ``perf`` for the true split.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import runpy
import sys
import threading
import time
from pathlib import Path
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _profiled_run(original: Any) -> Any:
    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        with _lock:
            _profiles.append(prof)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    return run


def dump(prefix: Path) -> None:
    """Merge every thread's profile and write the ``.prof`` and the two text reports."""
    live = [p for p in _profiles if p.getstats()]
    if not live:
        return
    stats = pstats.Stats(live[0])
    for prof in live[1:]:
        stats.add(prof)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(str(Path(f"{prefix}.prof")))
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        report = pstats.Stats(str(Path(f"{prefix}.prof")), stream=out)
        report.strip_dirs().sort_stats(key).print_stats(150)
        Path(f"{prefix}.{key}.txt").write_text(out.getvalue())


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "-m":
        print("usage: python -m bench.cprofile_threads OUT_PREFIX -m MODULE ARGS...")
        return 2
    prefix, module, args = Path(argv[0]), argv[2], argv[3:]
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign]
    main_prof = cProfile.Profile(time.thread_time)
    _profiles.append(main_prof)
    sys.argv = [module, *args]
    code: int = 0
    main_prof.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        main_prof.disable()
        dump(prefix)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
