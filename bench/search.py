"""7. Search: full-text queries over 1,000,000 generations in SQLite and PostgreSQL.

Issue 6: ``genvault search`` must stay fast on a million generations. This fills a
fresh database of each kind with ``rows`` generations made on the server (a recursive
CTE on SQLite, ``generate_series`` on PostgreSQL; through the real schema, so SQLite's
triggers index every row as it lands and PostgreSQL computes every ``search_tsv``),
then times :meth:`Store.search` on query shapes from a needle to a word in every
row: the median of five runs after a warm-up, in this process (a search is one
short read; there is no RSS or child-process question here).

Prompts are ~100 characters of a small vocabulary (so common words are really
common: each noun is in 5 % of rows, "seed" in all of them) and every 100,000th
one also says "a red fox in fresh snow" (the needle, 10 rows in a million).

Seeding PostgreSQL drops the GIN index and builds it again after the load (from
its own ``pg_get_indexdef``), in two parallel sessions: a GIN index maintained row
by row makes a bulk load ~1.7x slower, and that is not what is measured here. It
also times one ranked query against an *expression* GIN index over the same text,
the alternative to the stored column (see :mod:`genvault.store.queries.search`): ranking
then has to parse every matching prompt again.

Shared with ``tests/integration/test_search.py``, which seeds its large databases
with :func:`seed` (short prompts, to stay fast) and checks the plans.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from bench.core import Result, Scale
from genvault.store import Store

NAME: Final = "search"
TITLE: Final = "full-text search over 1,000,000 generations in SQLite and PostgreSQL"
RATIOS: Final = (
    "SQLite: rare phrase ms / 50",
    "PostgreSQL: rare phrase ms / 50",
    "SQLite: common word ms / 500",
    "PostgreSQL: common word ms / 500",
)
"""Labels of the ratios every run reports (the CI smoke test checks them)."""
ROWS: Final = {Scale.FULL: 1_000_000, Scale.SMOKE: 20_000}
RARE_TARGET_MS: Final = 50.0
COMMON_TARGET_MS: Final = 500.0
REPEATS: Final = 5
NEEDLE: Final = "a red fox in fresh snow"
NEEDLE_EVERY: Final = 100_000
"""Row ``g`` carries the needle when ``g % NEEDLE_EVERY == 7``."""
SECONDS_APART: Final = 30
"""Row ``g`` was created ``g * 30`` seconds ago: a million rows span ~347 days."""

ADJECTIVES: Final = (
    "ancient",
    "quiet",
    "golden",
    "misty",
    "neon",
    "tiny",
    "giant",
    "frozen",
    "rusty",
    "glowing",
    "velvet",
    "crystal",
    "stormy",
    "sunlit",
    "broken",
    "hidden",
    "floating",
    "silent",
    "vivid",
    "pale",
)
NOUNS: Final = (
    "lighthouse",
    "astronaut",
    "teapot",
    "mountain",
    "train",
    "castle",
    "robot",
    "whale",
    "garden",
    "library",
    "dragon",
    "violin",
    "bicycle",
    "forest",
    "harbor",
    "owl",
    "samurai",
    "cathedral",
    "desert",
    "orchid",
)
PLACES: Final = (
    "on a cliff",
    "in a market",
    "under the sea",
    "at dawn",
    "in the rain",
    "on mars",
    "in a cave",
    "at midnight",
    "in the clouds",
    "by a lake",
)
STYLES: Final = (
    "photorealistic",
    "watercolor",
    "cinematic lighting",
    "isometric 3D render",
    "35mm film grain",
    "oil painting",
    "pixel art",
    "studio ghibli style",
    "ultra detailed 8k",
    "charcoal sketch",
)
MODELS: Final = (
    "imagen-4",
    "imagen-4-ultra",
    "nano-banana",
    "veo-3",
    "veo-3-fast",
    "flux.1-dev",
    "gpt-image-1",
    "sora-2",
)
PROVIDERS: Final = ("geminigen", "akool", "tengrai", "quickrouter", "crowdcomputed")

QUERIES: Final[tuple[tuple[str, str, dict[str, Any]], ...]] = (
    ("rare phrase", f'"{NEEDLE.removeprefix("a ")}"', {}),
    ("rare words (AND)", "fox snow", {}),
    ("common word", "lighthouse", {}),
    ("common word + provider + last 7 days", "lighthouse", {"provider": "geminigen", "days": 7}),
    ("two common words (AND)", "golden lighthouse", {}),
    ("prefix of 2 letters", "li*", {}),
    ("model name", "veo-3", {}),
    ("word in every row", "seed", {}),
    ("no match", "zebra", {}),
)
"""(label, query, options): ``days`` becomes ``since = now - days``."""


# --------------------------------------------------------------------------- seeding


HASH: Final = 2654435761
"""Knuth's multiplier: ``h = g * HASH mod 2**32`` is a bijection that scatters rows."""
STRIDES: Final = {
    "adjective": 1,
    "adjective2": 20,
    "noun": 400,
    "place": 8_000,
    "style": 80_000,
    "style2": 800_000,
    "model": 8_000_000,
    "provider": 64_000_000,
}
"""Which mixed-radix "digit" of ``h`` picks each word: every combination occurs, and
the rows sharing a word are spread over the whole table, as in a real library (a
stride over ``g`` itself would store them side by side and flatter every query)."""


def _pick_pg(words: Sequence[str], stride: int) -> str:
    array = "ARRAY[" + ",".join(f"'{w}'" for w in words) + "]"
    return f"({array})[1 + ((h / {stride}) % {len(words)})::int]"


def _pick_sqlite(words: Sequence[str], stride: int) -> str:
    return (
        f"json_extract('{json.dumps(list(words))}', '$[' || ((h / {stride}) % {len(words)}) || ']')"
    )


def _prompt(pick: Callable[[Sequence[str], int], str], long: bool) -> str:
    """The SQL expression of row ``g``'s prompt (see :data:`STRIDES`)."""
    st = STRIDES
    parts = [pick(ADJECTIVES, st["adjective"]), pick(NOUNS, st["noun"]), pick(STYLES, st["style"])]
    if long:
        parts = [
            pick(ADJECTIVES, st["adjective"]),
            pick(ADJECTIVES, st["adjective2"]),
            pick(NOUNS, st["noun"]),
            pick(PLACES, st["place"]),
            pick(STYLES, st["style"]),
            pick(STYLES, st["style2"]),
            "'seed ' || (g % 5000)",
        ]
    body = " || ' ' || ".join(parts)
    return f"CASE WHEN g % {NEEDLE_EVERY} = 7 THEN '{NEEDLE}, ' ELSE '' END || {body}"


def seed_sql(dialect: str, first: int, last: int, *, long: bool) -> str:
    """One INSERT … SELECT of generations ``first``..``last`` (1-based), made by the server."""
    cols = (
        "provider, account, external_id, status, provider_status, source, created_at,"
        " poll_attempts, fingerprint, sidecar_due, raw, first_seen_at, updated_at, prompt, model"
    )
    if dialect == "sqlite":
        pick = _pick_sqlite
        rows = (
            f"WITH RECURSIVE n(g) AS (SELECT {first} UNION ALL SELECT g + 1 FROM n"
            f" WHERE g < {last}), s(g, h) AS (SELECT g, (g * {HASH}) % 4294967296 FROM n) "
        )
        # the text SQLAlchemy writes for a DateTime on SQLite: microseconds, 6 digits
        created = (
            "strftime('%Y-%m-%d %H:%M:%f', 'now',"
            f" '-' || (g * {SECONDS_APART}) || ' seconds') || '000'"
        )
        now, raw, source = "strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'", "'{}'", "FROM s"
    else:
        pick = _pick_pg
        rows = ""
        created = f"now() - make_interval(secs => g * {SECONDS_APART})"
        now, raw = "now()", "'{}'::jsonb"
        source = (
            f"FROM (SELECT g, (g::bigint * {HASH}) % 4294967296 AS h"
            f" FROM generate_series({first}, {last}) AS g) AS s"
        )
    provider, model = pick(PROVIDERS, STRIDES["provider"]), pick(MODELS, STRIDES["model"])
    return (
        f"{rows}INSERT INTO generation ({cols}) SELECT {provider}, 'acc' || (g % 7),"
        f" 'gen-' || g, 'succeeded', 'completed', 'history', {created}, 0, '', false, {raw},"
        f" {now}, {now}, {_prompt(pick, long)}, {model} {source}"
    )


def needles(rows: int) -> list[int]:
    """The ``g`` of every row whose prompt carries :data:`NEEDLE`."""
    return list(range(7, rows + 1, NEEDLE_EVERY))


def provider_of(g: int) -> str:
    """The provider :func:`seed_sql` gives row ``g`` (as the SQL computes it)."""
    h = (g * HASH) % 2**32
    return PROVIDERS[(h // STRIDES["provider"]) % len(PROVIDERS)]


def seed(store: Store, rows: int, *, long: bool = True, workers: int = 2) -> None:
    """Add ``rows`` generations to an empty, migrated store (see the module docstring)."""
    if store.is_sqlite:
        with store.tx() as conn, store.indexing_new_generations(conn):
            conn.execute(sa.text(seed_sql("sqlite", 1, rows, long=long)))
        return
    with store.tx() as conn:
        index_def = conn.execute(
            sa.text("SELECT pg_get_indexdef('ix_generation_search'::regclass)")
        ).scalar_one()
        conn.execute(sa.text("DROP INDEX ix_generation_search"))
    bounds = [(rows * i // workers + 1, rows * (i + 1) // workers) for i in range(workers)]
    errors: list[BaseException] = []

    def load(first: int, last: int) -> None:
        try:
            with store.tx() as conn:
                conn.execute(sa.text(seed_sql("postgresql", first, last, long=long)))
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=load, args=b) for b in bounds if b[0] <= b[1]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    with store.tx() as conn:
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
        conn.execute(sa.text(index_def))
        conn.execute(sa.text("ANALYZE generation"))


# --------------------------------------------------------------------------- measuring


def _median_ms(fn: Callable[[], object]) -> tuple[float, object]:
    out = fn()  # warm-up: caches, plan
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), out


def measure(result: Result, db: str, store: Store, rows: int) -> dict[str, float]:
    """Seed, then time every query shape; returns ms by query label."""
    started = time.perf_counter()
    seed(store, rows)
    seeded = time.perf_counter() - started
    result.figure(f"{db}: generations seeded", rows, "")
    result.figure(f"{db}: seeding rate, index included", rows / seeded, "rows/s")
    now = datetime.now(UTC)
    timings: dict[str, float] = {}
    for label, query, options in QUERIES:
        kw: dict[str, Any] = {"provider": options.get("provider")}
        if "days" in options:
            kw["since"] = now - timedelta(days=options["days"])
        ms, hits = _median_ms(functools.partial(store.search, query, **kw))
        timings[label] = ms
        assert isinstance(hits, list)
        result.figure(f"{db}: {label} {query!r} ({len(hits)} hits)", ms, "ms")
    plan = "\n".join(store.explain_search('"red fox"'))
    uses = "ix_generation_search" in plan if not store.is_sqlite else "VIRTUAL TABLE INDEX" in plan
    result.note(f"{db}: the rare-phrase plan uses the full-text index: {uses}")
    return timings


def expression_index_ms(store: Store, word: str) -> tuple[float, float]:
    """PostgreSQL: (stored column, expression index) median ms of one ranked query."""
    expr = "to_tsvector('simple'::regconfig, coalesce(model, '') || ' ' || coalesce(prompt, ''))"
    with store.tx() as conn:
        conn.execute(sa.text("SET LOCAL maintenance_work_mem = '256MB'"))
        conn.execute(sa.text(f"CREATE INDEX ix_bench_expr ON generation USING gin (({expr}))"))
        conn.execute(sa.text("ANALYZE generation"))

    def ranked(vector: str) -> Callable[[], object]:
        sql = sa.text(
            f"SELECT id, ts_rank({vector}, q) AS s FROM generation,"
            f" plainto_tsquery('simple', :w) AS q WHERE {vector} @@ q"
            " ORDER BY s DESC, created_at DESC, id DESC LIMIT 50"
        )

        def run() -> object:
            with store.engine.connect() as conn:
                return conn.execute(sql, {"w": word}).all()

        return run

    try:
        return _median_ms(ranked("search_tsv"))[0], _median_ms(ranked(expr))[0]
    finally:
        with store.tx() as conn:
            conn.execute(sa.text("DROP INDEX ix_bench_expr"))


def run(scale: Scale) -> Result:
    """SQLite then PostgreSQL, each a fresh database of ``ROWS[scale]`` generations."""
    result = Result(NAME, TITLE, scale)
    rows = ROWS[scale]
    timings: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'search.db'}")
        try:
            store.upgrade()
            timings["SQLite"] = measure(result, "SQLite", store, rows)
        finally:
            store.dispose()
    from tests.fixtures.postgres import fresh_database, postgres_server

    with postgres_server() as server, fresh_database(server, "bench_search") as url:
        store = Store(url)
        try:
            store.upgrade()
            timings["PostgreSQL"] = measure(result, "PostgreSQL", store, rows)
            stored, expression = expression_index_ms(store, "lighthouse")
            result.figure("PostgreSQL: 'lighthouse' ranked, stored tsvector column", stored, "ms")
            result.figure("PostgreSQL: 'lighthouse' ranked, expression GIN index", expression, "ms")
        finally:
            store.dispose()
    for db, by_label in timings.items():
        result.ratio(
            f"{db}: rare phrase ms / 50",
            by_label["rare phrase"] / RARE_TARGET_MS,
            1.0,
            at_most=True,
        )
        result.ratio(
            f"{db}: common word ms / 500",
            by_label["common word"] / COMMON_TARGET_MS,
            1.0,
            at_most=True,
        )
    result.note(
        f"{rows:,} generations, ~100-character prompts; median of {REPEATS} after a warm-up;"
        " 50 results asked for each query (the CLI's default)"
    )
    return result


if __name__ == "__main__":
    sys.exit("run it as: python -m bench search")
