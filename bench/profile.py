"""Profiles of genvault for issue 14: ``python -m bench.profile {archive,startup} [--out DIR]``.

Not a benchmark (nothing is compared or reported as a ratio): it runs genvault the way
``bench.local`` does, under profilers, and writes text profiles into ``bench/profiles/``
(``RUN.md`` there lists the commands and the files; ``bench/PROFILE.md`` reads them).

``archive``: the raw local-folder case of ``bench.local`` (200 x 1 MB + 5 x 50 MB from
the loopback simulators, concurrency 8, ``file://`` storage, schema at head), each run
on a fresh database and folder, one per profiler:

* **py-spy** (``--gil``, 250 Hz): the Python stacks of whichever thread holds the GIL,
  i.e. the interpreter's time; kept as collapsed stacks and summarised per layer
  (:func:`summarise_pyspy`);
* **perf** (``perf record -F 1999``, user + kernel, no call graphs): which code the
  CPU ran, by shared object and symbol (sha256 in libcrypto, memcpy in libc, TCP
  receive, page faults, ext4 in the kernel), which py-spy cannot see;
* **cProfile, every thread** (:mod:`bench.cprofile_threads`): exact call counts
  (reads per file, chunks, commits, log lines);
* and the bare script of ``bench.local`` under perf, for the same split of the floor.

``startup``: a ``run --once`` with nothing to do (SQLite + local folder, ten files
archived by an earlier run, so it syncs one page per account and leases nothing):
wall/CPU/RSS of 7 runs against ``python -c pass`` and ``python -c "import genvault.cli"``,
``-X importtime`` (raw and summarised) and cProfile. (py-spy is no use here: sampling a
process that spends most of its life importing, at any useful rate, tripled its time.)
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench import local, throughput
from bench import startup as bench_startup
from bench.core import Scale
from bench.infra import (
    REPO,
    ChildRun,
    MiB,
    Source,
    child_env,
    python_module,
    run_child,
    run_genvault,
    s3_server,
    verify_folder,
    workspace,
    write_json,
)

OUT: Final = REPO / "bench" / "profiles"
PYSPY_RATE: Final = 250
PERF_FREQ: Final = 1999
DAEMON: Final = REPO / "daemon"


def tool(name: str) -> str:
    """A profiler next to this interpreter (the venv's py-spy) or on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found (pip install py-spy; apt-get install linux-perf)")
    return found


def pyspy(out: Path, rate: int = PYSPY_RATE) -> Callable[[list[str]], list[str]]:
    """py-spy record, collapsed stacks, **only the thread holding the GIL** (``--gil``):
    the interpreter's time by Python stack. In this VM py-spy's idle detection does not
    work (with or without ``--native`` it sampled threads blocked on the GIL, a queue or
    ``fsync`` as busy: 12.9-14.2 s of samples for a 4.6-6.1 CPU-s run); ``perf`` gives
    the C and kernel time the GIL holder does not see."""
    flags = ["--gil"]
    return lambda argv: [
        tool("py-spy"), "record", *flags, "--rate", str(rate), "--format", "raw",
        "--output", str(out), "--", *argv,
    ]  # fmt: skip


def perf(out: Path) -> Callable[[list[str]], list[str]]:
    return lambda argv: [
        tool("perf"), "record", "--quiet", "-g", "-F", str(PERF_FREQ), "-o", str(out),
        "--", *argv,
    ]  # fmt: skip


def cprofile(prefix: Path) -> Callable[[list[str]], list[str]]:
    def wrap(argv: list[str]) -> list[str]:
        assert argv[1:3] == ["-m", "genvault.cli"], argv
        return [argv[0], "-m", "bench.cprofile_threads", str(prefix), *argv[1:]]

    return wrap


def header(child: ChildRun, total_bytes: int, what: str) -> str:
    load = os.getloadavg()
    return (
        f"# {what}\n# wall {child.seconds:.2f} s, CPU {child.cpu_seconds:.2f} s "
        f"({child.cpu_seconds / (total_bytes / 1024**3):.2f} CPU-s/GB of "
        f"{total_bytes / MiB:.0f} MB),"
        f" peak RSS {child.max_rss_mb:.1f} MB; load after: {load[0]:.2f} {load[1]:.2f}\n"
    )


# --------------------------------------------------------------------------- archive


def archive(out: Path) -> None:
    sizes = local.SIZES[Scale.FULL]
    source = Source(sizes.images, sizes.image_size, sizes.videos, sizes.video_size)
    total = source.total_bytes
    out.mkdir(parents=True, exist_ok=True)
    with workspace("profile-archive") as work, source:
        runs: dict[str, Callable[[list[str]], list[str]] | None] = {
            "plain": None,
            "pyspy": pyspy(work / "archive.pyspy.raw"),
            "perf": perf(work / "archive.perf.data"),
            "cprofile": cprofile(out / "archive.cprofile"),
        }
        children: dict[str, ChildRun] = {}
        for name, wrap in runs.items():
            os.sync()
            run = run_genvault(
                f"genvault-{name}",
                workdir=work,
                s3=None,
                bucket="",
                prefix="",
                source=source,
                concurrency=local.CONCURRENCY,
                migrated=True,
                folder=work / f"archive-{name}",
                wrap=wrap,
            )
            children[name] = run.child
            shutil.rmtree(work / f"archive-{name}", ignore_errors=True)
            print(f"{name}: {run.child.seconds:.2f} s, archive {run.phases.archive:.2f} s")
        samples = (work / "archive.pyspy.raw").read_text()
        with gzip.open(out / "archive.pyspy.collapsed.txt.gz", "wt") as fh:
            fh.write(samples)
        (out / "archive.pyspy.summary.txt").write_text(
            header(children["pyspy"], total, "py-spy --gil, genvault run --once, raw case")
            + header(children["plain"], total, "the same run without a profiler")
            + summarise_pyspy(samples, PYSPY_RATE, total)
        )
        (out / "archive.perf.txt").write_text(
            header(children["perf"], total, "perf record, genvault run --once, raw case")
            + perf_report(work / "archive.perf.data", total, children["plain"].cpu_seconds)
        )
        prof_head = header(children["cprofile"], total, "cProfile (every thread)")
        for key in ("cumulative", "tottime"):
            path = out / f"archive.cprofile.{key}.txt"
            path.write_text(prof_head + path.read_text())
        # archive.cprofile.prof stays (ignored by git): pstats can answer more from it
        # the floor, under perf too
        os.sync()
        folder = work / "archive-bare"
        job = write_json(
            work / "bare.json",
            {
                "folder": str(folder),
                "concurrency": local.CONCURRENCY,
                "files": [{"url": f.url, "path": f.path} for f in source.files],
            },
        )
        argv = perf(work / "bare.perf.data")(python_module("bench.local", "bare", str(job)))
        bare = run_child("bare-perf", argv, env=child_env(), logs=work / "logs", timeout=600)
        verify_folder(folder, source, who="bare")
        (out / "bare.perf.txt").write_text(
            header(bare.check(), total, "perf record, bench.local bare script (hash+write+fsync)")
            + perf_report(work / "bare.perf.data", total, bare.cpu_seconds)
        )


def s3(out: Path, tag: str) -> None:
    """genvault ``run --once`` into s3rver as ``bench.throughput`` runs it (full size:
    200 x 1 MB + 5 x 200 MB, concurrency 8, 8 MiB parts), under py-spy ``--gil`` and
    perf, plus an unprofiled run whose CPU-s the perf shares are scaled to. ``tag``
    names the files (``s3.TAG.*``: ``before`` / ``after`` a change of the write path)."""
    sizes = throughput.SIZES[Scale.FULL]
    source = Source(sizes.images, sizes.image_size, sizes.videos, sizes.video_size)
    total = source.total_bytes
    out.mkdir(parents=True, exist_ok=True)
    with (
        workspace("profile-s3") as work,
        s3_server("s3rver", work) as endpoint,
        source,
    ):
        endpoint.create_bucket(throughput.BUCKET)
        runs: dict[str, Callable[[list[str]], list[str]] | None] = {
            "plain": None,
            "pyspy": pyspy(work / "s3.pyspy.raw"),
            "perf": perf(work / "s3.perf.data"),
        }
        children: dict[str, ChildRun] = {}
        for name, wrap in runs.items():
            run = run_genvault(
                f"genvault-{name}",
                workdir=work,
                s3=endpoint,
                bucket=throughput.BUCKET,
                prefix=name,
                source=source,
                concurrency=throughput.CONCURRENCY,
                migrated=True,
                wrap=wrap,
            )
            children[name] = run.child
            endpoint.empty(throughput.BUCKET, f"{name}/")
            print(f"{name}: {run.child.seconds:.2f} s, archive {run.phases.archive:.2f} s")
        samples = (work / "s3.pyspy.raw").read_text()
        with gzip.open(out / f"s3.{tag}.pyspy.collapsed.txt.gz", "wt") as fh:
            fh.write(samples)
        (out / f"s3.{tag}.pyspy.summary.txt").write_text(
            header(children["pyspy"], total, "py-spy --gil, genvault run --once into s3rver")
            + header(children["plain"], total, "the same run without a profiler")
            + summarise_pyspy(samples, PYSPY_RATE, total)
        )
        (out / f"s3.{tag}.perf.txt").write_text(
            header(children["perf"], total, "perf record, genvault run --once into s3rver")
            + perf_report(work / "s3.perf.data", total, children["plain"].cpu_seconds)
        )


_SYSCALL = re.compile(r"^(?:__x64_sys_|__do_sys_|__se_sys_|ksys_)(?P<name>\w+?)(?:\+|$)")


def perf_layers(data: Path, total_bytes: int, cpu_seconds: float) -> str:
    """Every sample of ``perf record -g`` put in one layer: the syscall its kernel stack
    entered by (write, fsync, recvfrom, openat...), a page fault, an interrupt, or, in
    user space, the shared object it ran in (libcrypto: sha256; libpython: the
    interpreter; libc: memcpy and malloc). CPU-s are each layer's share of the samples
    times the process's CPU time from ``wait4`` (perf's cpu-clock in this VM samples
    faster than ``-F`` asks, so sample counts are not seconds)."""
    proc = subprocess.run(
        [tool("perf"), "script", "-i", str(data), "-F", "ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    )
    layers: Counter[str] = Counter()
    kernel_syms: dict[str, Counter[str]] = defaultdict(Counter)
    samples = 0
    for block in proc.stdout.split("\n\n"):
        frames = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
        if not frames:
            continue
        samples += 1
        parsed = []
        for frame in frames:
            _, _, rest = frame.partition(" ")
            sym, _, dso = rest.rpartition(" (")
            parsed.append((sym.split("+")[0], dso.rstrip(")")))
        leaf_sym, leaf_dso = parsed[0]
        if "kernel" not in leaf_dso:
            layer = "user: " + Path(leaf_dso).name.split(".so")[0]
        else:
            layer = "kernel: other"
            for sym, _ in parsed:
                m = _SYSCALL.match(sym)
                if m:
                    layer = f"kernel: {m.group('name')}(2)"
                    break
                if sym.startswith("asm_exc_page_fault"):
                    layer = "kernel: page faults"
                    break
                if sym.startswith(("asm_sysvec", "asm_common_interrupt", "irq_exit")):
                    layer = "kernel: interrupts, softirq (loopback TCP, timers)"
                    break
            kernel_syms[layer][leaf_sym] += 1
        layers[layer] += 1
    secs = cpu_seconds / max(samples, 1)
    gb = total_bytes / 1024**3
    out = [
        f"\n## perf layers: {samples} samples over the process's {cpu_seconds:.2f} CPU-s\n",
        f"{'layer':<58} {'CPU-s':>7} {'CPU-s/GB':>9} {'share':>6}",
    ]
    for layer, n in layers.most_common():
        out.append(f"{layer:<58} {n * secs:7.2f} {n * secs / gb:9.2f} {n / samples:6.1%}")
    out.append("\n## kernel layers: top kernel symbols in each\n")
    for layer, _ in layers.most_common():
        if layer in kernel_syms:
            top = ", ".join(f"{s} {n * secs:.2f}" for s, n in kernel_syms[layer].most_common(5))
            out.append(f"{layer}: {top}")
    return "\n".join(out) + "\n"


def perf_report(data: Path, total_bytes: int, cpu_seconds: float) -> str:
    """Layers by syscall and shared object, then perf's own split by object and symbol."""
    parts = [perf_layers(data, total_bytes, cpu_seconds)]
    for sort, limit in (("dso", 25), ("dso,sym", 70)):
        proc = subprocess.run(
            [tool("perf"), "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
             "--sort", sort, "--percent-limit", "0.3"],
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        lines = [ln for ln in proc.stdout.splitlines() if ln and not ln.startswith("#")]
        parts.append(f"\n## perf report --sort {sort} (top {limit}, >= 0.3 %)\n")
        parts.extend(lines[:limit])
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- py-spy summary

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>[^()]*)\)$")
Layer = tuple[str, Callable[[list[str], str], bool]]


def _frames(stack: str) -> list[str]:
    return stack.split(";")


def _genvault_where(frame: str) -> tuple[str, int] | None:
    """``("genvault/storage/local.py", 253)`` for a genvault frame, else None."""
    m = _FRAME.match(frame)
    if m is None:
        return None
    where = m.group("where")
    if "genvault/" not in where or ":" not in where:
        return None
    path, _, line = where.rpartition(":")
    rel = path[path.index("genvault/") :]
    return (rel, int(line)) if line.isdigit() else None


def _statement(rel: str, line: int) -> str:
    try:
        return (DAEMON / rel).read_text().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        return "?"


def classify(frames: list[str]) -> str:
    """The layer one on-CPU sample belongs to (see PROFILE.md for what each holds)."""
    text = ";".join(frames)
    if "_find_and_load" in text or "_call_with_frames_removed" in text:
        return "start-up: imports"
    if "write_sidecars" in text or "_put_sidecar" in text:
        return "sidecars (after the pool)"
    if "jobs/sync.py" in text:
        return "history sync"
    if "botocore/" in text or "s3transfer/" in text or "urllib3/" in text:
        return classify_s3(frames, text)
    inner = None
    for frame in reversed(frames):
        found = _genvault_where(frame)
        if found is not None:
            inner = found
            break
    if inner is None:
        if "concurrent/futures" in text or "threading.py" in text:
            return "thread pool machinery"
        return "interpreter / outside genvault"
    rel, line = inner
    stmt = _statement(rel, line)
    idx = max(i for i, f in enumerate(frames) if _genvault_where(f) == inner)
    below = ";".join(frames[idx + 1 :])
    if rel.endswith("storage/local.py"):
        if "fsync" in stmt:
            return "fsync: file and folder"
        if "write(" in stmt or "flush()" in stmt:
            return "file write (BufferedWriter -> write(2))"
        if "setxattr" in stmt or "_set_sha256" in stmt:
            return "xattr"
        if "replace" in stmt or "_make_parents" in stmt or "_locked_temp" in stmt:
            return "temp file, lock, rename, mkdir"
        return f"storage/local.py other: {stmt}"
    if rel.endswith("storage/base.py"):
        if "update" in stmt:
            return "sha256"
        return f"storage/base.py: {stmt}"
    if rel.endswith("download.py"):
        if "httpcore" in below or "h11" in below or "socket" in below or "httpx" in below:
            return "httpx/httpcore/h11 read path (socket recv, parsing, iterators)"
        if "join" in stmt or "last[" in stmt:
            return "MediaStream.read: join / slice copies"
        return f"download.py: {stmt}"
    if "sqlalchemy" in below or "sqlite3" in below or rel.endswith("store.py"):
        return "database (store, SQLAlchemy, sqlite3)"
    if "structlog" in below or rel.endswith(("logs.py", "logging.py")):
        return "logging (structlog)"
    if rel.endswith(("guard.py", "throttle.py")):
        return "storage guard / throttle"
    if rel.endswith(("http.py",)):
        return "http.py (policy, guarded transport, API client)"
    return f"{rel}: {stmt}"


def classify_s3(frames: list[str], text: str) -> str:
    """A sample inside boto3/botocore/s3transfer/urllib3 (the S3 write path), by what
    the request machinery was doing: signing (sha256 of the body over http), checksums
    (CRC32 of each part), sending the body, reading the reply, or the rest of botocore."""
    leaf = frames[-1]
    if "botocore/auth.py" in text and ("payload" in text or "sha256" in leaf):
        return "S3: botocore sha256 of the request body (SigV4 over http)"
    if "httpchecksum.py" in text:
        return "S3: botocore CRC32 of the request body (flexible checksums)"
    if "send" in leaf or "sendall" in leaf or "_send_output" in text or "body_to_chunks" in text:
        return "S3: sending the request body (http.client/urllib3)"
    if "getresponse" in text or "_read_status" in text or "begin (" in text:
        return "S3: waiting for / reading the response"
    if "s3transfer/" in text:
        if "botocore/" in text:
            return "S3: botocore request path under s3transfer"
        return "S3: s3transfer machinery (futures, queues, ReadFileChunk)"
    return "S3: botocore request path (serialise, sign, parse)"


def summarise_pyspy(samples: str, rate: int, total_bytes: int) -> str:
    """Layers, then the innermost genvault statements, then the leaf functions.

    Seconds are GIL-held seconds (samples / rate): the interpreter's own time, plus C
    code that keeps the GIL (short ``sha256.update``, ``bytes.join``).
    """
    layers: Counter[str] = Counter()
    statements: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    native_under: dict[str, Counter[str]] = defaultdict(Counter)
    count_all = 0
    for line in samples.splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not n_text.isdigit():
            continue
        n = int(n_text)
        frames = _frames(stack)
        count_all += n
        layer = classify(frames)
        layers[layer] += n
        leaves[frames[-1]] += n
        native_under[layer][frames[-1]] += n
        for frame in reversed(frames):
            found = _genvault_where(frame)
            if found is not None:
                rel, lineno = found
                statements[f"{rel}:{lineno}  {_statement(rel, lineno)}"] += n
                break
    gb = total_bytes / 1024**3
    out = [
        f"\n## GIL-held samples: {count_all} at {rate} Hz = {count_all / rate:.2f} s "
        "(CPU-s below: seconds holding the GIL)\n",
        f"{'layer':<66} {'CPU-s':>7} {'CPU-s/GB':>9} {'share':>6}",
    ]
    for layer, n in layers.most_common():
        secs = n / rate
        out.append(f"{layer[:66]:<66} {secs:7.2f} {secs / gb:9.2f} {n / count_all:6.1%}")
    out.append("\n## innermost genvault statement of each sample (top 40)\n")
    for stmt, n in statements.most_common(40):
        out.append(f"{n / rate:7.2f} CPU-s  {stmt[:140]}")
    out.append("\n## leaf frames, self time (top 40)\n")
    for leaf, n in leaves.most_common(40):
        out.append(f"{n / rate:7.2f} CPU-s  {leaf[:140]}")
    out.append("\n## leaf frames under each of the top layers (top 8 each)\n")
    for layer, _ in layers.most_common(8):
        out.append(f"-- {layer}")
        for leaf, n in native_under[layer].most_common(8):
            out.append(f"   {n / rate:7.2f} CPU-s  {leaf[:130]}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- start-up


def startup(out: Path, repeats: int = 7) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with bench_startup.idle("profile-startup") as setup:
        env, logs, cli = setup.env, setup.logs, setup.run_once
        timings, _ = bench_startup.time_commands(setup, repeats)
        lines = bench_startup.table(
            timings,
            f"# nothing-to-do start-up, {repeats} runs each (interleaved), median; "
            f"load {os.getloadavg()[0]:.2f}",
        )
        (out / "startup.timings.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        # -X importtime
        imp = run_child(
            "importtime", [sys.executable, "-X", "importtime", *cli[1:]], env=env, logs=logs,
            timeout=120,
        ).check()  # fmt: skip
        raw = [ln for ln in imp.stderr.read_text().splitlines() if ln.startswith("import time:")]
        (out / "startup.importtime.txt").write_text("\n".join(raw) + "\n")
        (out / "startup.importtime.summary.txt").write_text(summarise_importtime(raw))
        # cProfile (main thread is all there is when nothing is to do) and py-spy
        prof = cprofile(out / "startup.cprofile")(cli)
        run_child("cprofile", prof, env=env, logs=logs, timeout=120).check()
        # startup.cprofile.prof stays (ignored by git): pstats can answer more from it


def summarise_importtime(raw: list[str]) -> str:
    """Top-level packages by cumulative import time, then the dearest single modules."""
    rows: list[tuple[int, int, str]] = []
    for line in raw[1:]:
        body = line.removeprefix("import time:")
        own_text, cum_text, mod_text = body.split("|", 2)
        if not own_text.strip().isdigit():
            continue
        rows.append((int(own_text), int(cum_text), mod_text))
    total = sum(r[0] for r in rows)
    by_pkg: Counter[str] = Counter()
    for own, _, mod in rows:
        by_pkg[mod.strip().split(".")[0]] += own
    out = [
        f"# -X importtime of `genvault --config C run --once` (nothing to do): "
        f"{len(rows)} modules, {total / 1e6:.3f} s of imports (self times summed)\n",
        "## by top-level package (sum of self times)\n",
    ]
    for pkg, us in by_pkg.most_common(30):
        out.append(f"{us / 1e3:8.1f} ms  {pkg}")
    out.append("\n## top-level imports (indent 0-1) by cumulative time\n")
    tops = [(cum, name) for _, cum, name in rows if len(name) - len(name.lstrip()) <= 3]
    for cum, name in sorted(tops, reverse=True)[:40]:
        out.append(f"{cum / 1e3:8.1f} ms  {name.rstrip()}")
    out.append("\n## single modules by self time\n")
    for own, _, mod in sorted(rows, reverse=True)[:30]:
        out.append(f"{own / 1e3:8.1f} ms  {mod.strip()}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("what", choices=("archive", "startup", "s3"), nargs="+")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--tag", default="before", help="s3: names the files s3.TAG.*")
    args = parser.parse_args(argv)
    for what in args.what:
        if what == "s3":
            s3(args.out, args.tag)
        else:
            (archive if what == "archive" else startup)(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
