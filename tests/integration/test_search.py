"""Full-text search (issue 6) against real databases: SQLite FTS5 and PostgreSQL tsvector.

The small tests run on both backends (the ``store`` fixture): query syntax (AND,
phrases, prefixes), the index following every write (insert, prompt update, delete,
and a migration over rows that existed before it), filters, ranking, the archived
files of each hit, and hostile input. The large ones fill a database with 1,000,000
generations (PostgreSQL) or 200,000 (SQLite; a million is in ``bench/search.py``)
and read the plans: the search must go through the full-text index. Their times
are measured by the benchmark, not asserted here.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from bench.search import needles, provider_of, seed

from genvault.records import AssetState, GenerationRecord, GenerationStatus, MediaRole
from genvault.store import MIGRATIONS, Outcome, Store
from genvault.store.queries.search import MAX_TERMS, SearchHit, Term, fts5_match, parse_query
from tests.fixtures.postgres import fresh_database
from tests.integration.store_helpers import (
    ACCOUNT,
    DEFAULT_ROLES,
    POLL_HORIZON,
    RETENTION,
    media,
    now_utc,
    record,
    save,
    url,
)

S = GenerationStatus
DAY = timedelta(days=1)


def ids(hits: list[SearchHit]) -> list[str]:
    return [h.external_id for h in hits]


def found(store: Store, query: str, **kw: Any) -> set[str]:
    return set(ids(store.search(query, **kw)))


def rec(
    external_id: str, prompt: str | None, *, model: str = "imagen-4", **kw: Any
) -> GenerationRecord:
    return dataclasses.replace(record(external_id, prompt=prompt, **kw), model=model)


def save_as(
    store: Store, provider: str, records: list[GenerationRecord], account: str = ACCOUNT
) -> None:
    store.save_page(
        provider=provider,
        account=account,
        records=records,
        cursor=None,
        archive_roles=DEFAULT_ROLES,
        retention=RETENTION,
        poll_horizon=POLL_HORIZON,
    )


def assert_fts_in_sync(store: Store) -> None:
    """SQLite: FTS5 compares its index with the content table (raises when they differ)."""
    if store.is_sqlite:
        with store.tx() as conn:
            conn.execute(
                sa.text("INSERT INTO gen_fts (gen_fts, rank) VALUES ('integrity-check', 1)")
            )


# --------------------------------------------------------------------------- the query language


def test_parse_query_splits_words_phrases_and_prefixes() -> None:
    assert parse_query('red fox "fresh snow" cat* "red fo"*') == [
        Term("red"),
        Term("fox"),
        Term("fresh snow"),
        Term("cat", prefix=True),
        Term("red fo", prefix=True),
    ]
    # operators and punctuation alone are not terms; an unclosed quote runs to the end
    assert parse_query('* - && || ! : ( ) NEAR( "') == [Term("NEAR(")]
    assert parse_query('"unclosed phrase') == [Term("unclosed phrase")]
    assert parse_query("") == [] and parse_query("   \x00 ") == []
    assert len(parse_query("w " * 500)) == MAX_TERMS


def test_fts5_match_quotes_every_term() -> None:
    terms = [Term('a"b'), Term("NEAR(x"), Term("OR"), Term("ca", prefix=True)]
    assert fts5_match(terms) == '"a""b" "NEAR(x" "OR" "ca"*'


# --------------------------------------------------------------------------- syntax, both databases


def test_every_word_must_match_and_phrases_keep_their_order(store: Store) -> None:
    save(
        store,
        [
            rec("fox-snow", "A red fox in fresh snow, watercolor"),
            rec("fox-red", "a fox that is red"),
            rec("car", "a red car"),
        ],
    )
    assert found(store, "red fox") == {"fox-snow", "fox-red"}
    assert found(store, "fox RED") == {"fox-snow", "fox-red"}  # any case, any order
    assert found(store, '"red fox"') == {"fox-snow"}
    assert found(store, '"fox red"') == set()
    assert found(store, "red fox car") == set()
    assert found(store, "snow,") == {"fox-snow"}  # punctuation is not part of a word
    assert found(store, "zebra") == set()


def test_a_trailing_star_is_a_prefix(store: Store) -> None:
    save(
        store,
        [
            rec("cats", "two cats on a catalog cover"),
            rec("caterpillar", "a caterpillar"),
            rec("dog", "a dog in a car"),
            rec("fox", "a red fox"),
        ],
    )
    assert found(store, "cat*") == {"cats", "caterpillar"}
    assert found(store, "ca*") == {"cats", "caterpillar", "dog"}  # the 2-letter prefix index
    assert found(store, "cat") == set()  # no stemming: "cat" is not "cats"
    assert found(store, '"red fo"*') == {"fox"}
    assert found(store, "c*") == {"cats", "caterpillar", "dog"}


def test_model_names_are_searched_too(store: Store) -> None:
    save(
        store,
        [
            rec("veo", "a mountain lake", model="veo-3-fast"),
            rec("imagen", "a mountain lake at dawn", model="imagen-4-ultra"),
            rec("gpt", "a cat", model="gpt-4o"),
        ],
    )
    assert found(store, "veo") == {"veo"}
    assert found(store, "veo-3-fast") == {"veo"}
    assert found(store, "imagen-4-ultra dawn") == {"imagen"}
    assert found(store, "mountain lake") == {"veo", "imagen"}
    assert found(store, "gpt-4o") == {"gpt"}
    assert found(store, "gpt-4*") == {"gpt"}


def test_case_is_ignored_and_sqlite_also_ignores_accents(store: Store) -> None:
    save(store, [rec("cafe", "Un café à Paris"), rec("jp", "日本語の猫 at night")])
    assert found(store, "Café PARIS") == {"cafe"}
    assert found(store, "café paris") == {"cafe"}
    # unicode61 folds all of unicode and strips diacritics; PostgreSQL's 'simple' keeps
    # accents, and folds non-ASCII case only outside a C-locale database (the docstring)
    assert found(store, "cafe") == ({"cafe"} if store.is_sqlite else set())
    if store.is_sqlite:
        assert found(store, "CAFÉ") == {"cafe"}
    assert found(store, "日本語の猫") == {"jp"}
    assert found(store, "日本*") == {"jp"}


# ------------------------------------------------------------------- the index follows writes


def test_the_index_follows_inserts_prompt_updates_and_deletes(store: Store) -> None:
    n = now_utc()
    save(store, [rec("g1", "a red fox", created_at=n), rec("g2", "a lighthouse", created_at=n)])
    assert found(store, "fox") == {"g1"}

    # the prompt changes (an edit at the provider): the old words go, the new ones come
    save(store, [rec("g1", "a blue whale", created_at=n)])
    assert found(store, "fox") == set()
    assert found(store, "whale") == {"g1"}

    # a change of everything but the text keeps it findable (the update trigger's WHEN)
    save(store, [rec("g1", "a blue whale", created_at=n, expires_at=n + 3 * DAY)])
    save(store, [rec("g1", None, created_at=n)])  # an upsert without a prompt keeps it
    assert found(store, "whale") == {"g1"}

    # the model changes alone (a new payload, or the upsert would skip it as unchanged)
    save(store, [rec("g2", "a lighthouse", created_at=n, model="flux-pro", raw={"v": 2})])
    assert found(store, "flux-pro") == {"g2"}
    assert found(store, "imagen-4") == {"g1"}

    with store.tx() as conn:
        conn.execute(sa.text("DELETE FROM generation WHERE external_id = 'g1'"))
    assert found(store, "whale") == set()
    assert found(store, "lighthouse") == {"g2"}
    assert_fts_in_sync(store)


def test_a_generation_registered_without_a_prompt_becomes_findable_when_polled(
    store: Store,
) -> None:
    store.register_tasks(
        provider="geminigen",
        account=ACCOUNT,
        items=[{"id": "t1"}, {"id": "t2", "prompt": "a neon street market"}],
        source="track",
        poll_horizon=POLL_HORIZON,
    )
    assert found(store, "neon market") == {"t2"}
    assert found(store, "astronaut") == set()
    store.save_polled(
        provider="geminigen",
        account=ACCOUNT,
        record=rec("t1", "an astronaut tending a garden"),
        next_poll_at=None,
        poll_attempts=1,
        archive_roles=DEFAULT_ROLES,
        retention=RETENTION,
        poll_horizon=POLL_HORIZON,
    )
    assert found(store, "astronaut garden") == {"t1"}
    assert_fts_in_sync(store)


def _migrate(store: Store, revision: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.tx() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _save_at_0002(store: Store, external_id: str, prompt: str) -> None:
    """A generation row as a genvault of schema 0002 wrote it (today's store writes
    columns that later migrations added)."""
    now = now_utc()
    old = sa.table(
        "generation",
        *(
            sa.column(c)
            for c in [
                "provider",
                "account",
                "external_id",
                "status",
                "provider_status",
                "prompt",
                "model",
                "source",
                "created_at",
                "poll_attempts",
                "fingerprint",
                "sidecar_due",
                "raw",
                "first_seen_at",
                "updated_at",
            ]
        ),
    )
    with store.tx() as conn:
        conn.execute(
            old.insert().values(
                provider="geminigen",
                account=ACCOUNT,
                external_id=external_id,
                status="succeeded",
                provider_status="2",
                prompt=prompt,
                model="imagen-4",
                source="history",
                created_at=now,
                poll_attempts=0,
                fingerprint="",
                sidecar_due=False,
                raw=sa.cast("{}", sa.JSON),
                first_seen_at=now,
                updated_at=now,
            )
        )


def test_the_migration_indexes_the_rows_that_were_there_before_it(db_url: str) -> None:
    store = Store(db_url)
    try:
        _migrate(store, "0002")
        _save_at_0002(store, "old", "a steam train crossing a viaduct")
        store.upgrade()  # 0003 backfills
        assert found(store, "steam train") == {"old"}
        assert_fts_in_sync(store)
        _migrate(store, "0002", down=True)  # reversible, and again
        _save_at_0002(store, "between", "a glass teapot")
        store.upgrade()
        assert found(store, "teapot") == {"between"}
        assert found(store, "viaduct") == {"old"}
        assert_fts_in_sync(store)
    finally:
        store.dispose()


# ------------------------------------------------------------------- filters, ranking, files


def test_provider_since_and_limit_narrow_the_results(store: Store) -> None:
    n = now_utc()
    save_as(
        store, "geminigen", [rec(f"g{i}", "a red fox", created_at=n - i * DAY) for i in range(5)]
    )
    save_as(store, "tengrai", [rec("t0", "a red fox", created_at=n)], account="art")
    assert found(store, "fox") == {"g0", "g1", "g2", "g3", "g4", "t0"}  # every account
    assert found(store, "fox", provider="tengrai") == {"t0"}
    assert found(store, "fox", provider="akool") == set()
    assert found(store, "fox", since=n - 2 * DAY) == {"g0", "g1", "g2", "t0"}
    assert found(store, "fox", provider="geminigen", since=n - DAY) == {"g0", "g1"}
    assert len(store.search("fox", limit=2)) == 2
    hit = next(h for h in store.search("fox", provider="tengrai"))
    assert (hit.provider, hit.account, hit.created_at) == ("tengrai", "art", n)


def test_best_match_first_then_newest(store: Store) -> None:
    n = now_utc()
    filler = " ".join(["and", "then", "some", "more", "words"] * 8)
    save(
        store,
        [
            rec("long", f"a fox {filler}", created_at=n),
            rec("short-old", "fox", created_at=n - 2 * DAY),
            rec("short-new", "fox", created_at=n - DAY),
            *[rec(f"other{i}", "a lighthouse", created_at=n) for i in range(10)],
        ],
    )
    hits = store.search("fox")
    # equal text ties on rank and goes newest first; the diluted match comes last
    assert ids(hits) == ["short-new", "short-old", "long"]
    assert hits[0].score == hits[1].score > hits[2].score


def test_hits_name_the_archived_files_of_each_generation(store: Store) -> None:
    save(
        store,
        [
            record(
                "two-files",
                prompt="an owl at midnight",
                media_=[
                    media(url("a.png")),
                    media(url("b.png")),
                    media(url("ref.jpg"), MediaRole.REFERENCE),
                ],
            ),
            record("no-files", prompt="an owl, failed", status=S.FAILED),
        ],
    )
    leased = store.leases.acquire("w", limit=10, lease_seconds=60)
    first = min(leased, key=lambda a: a.position)
    store.leases.finish(
        "w",
        [
            Outcome(
                first.id,
                AssetState.ARCHIVED,
                size=3,
                sha256="ab" * 32,
                content_type="image/png",
                storage_key="geminigen/main/two-files/00-result.png",
            )
        ],
    )
    hits = {h.external_id: h for h in store.search("owl")}
    assert hits["two-files"].storage_keys == ("geminigen/main/two-files/00-result.png",)
    assert hits["two-files"].files_total == 2  # the reference role is not archived: not counted
    assert hits["no-files"].storage_keys == () and hits["no-files"].files_total == 0
    assert hits["no-files"].status == "failed"


# --------------------------------------------------------------------------- hostile input

HOSTILE = [
    '"',
    '""',
    '"""',
    "*",
    "**",
    "fox**",
    "*fox",
    "NEAR(",
    "NEAR(fox snow)",
    "fox OR snow",
    "OR",
    "AND NOT",
    "-fox",
    "fox -snow",
    ":",
    "prompt:fox",
    "model : fox",
    "fox:*",
    "&|!",
    "fox & snow | !cat",
    "'",
    "fox'",
    "\\",
    "a'b\\",
    "\\'':*",
    "(",
    ")",
    "fox)",
    "{fox}",
    "^fox",
    "fox + snow",
    "<->",
    "fox <-> snow",
    "fox <2> snow",
    "\x00fox",
    "fox\x00\x01\x1f",
    "\ud800",
    "fox\udfff",
    "🦊 fox 🦊",
    "ǅ ß ﬁ İ",
    "\u200b\u200dfox",
    "x" * 10_000,
    "fox " * 2_500,
    '"' + "a " * 5_000,
    "fox" + "*" * 10_000,
    "a'b\\*",
    "it's*",
    "x\\*",
    "'fox'*",
    "fox:*",
    "fo'*",
    '"fox\'s"*',
]


def test_hostile_queries_never_raise(store: Store) -> None:
    save(store, [rec("fox", "a red fox in fresh snow"), rec("cat", "a cat reading a newspaper")])
    for query in HOSTILE:
        hits = store.search(query)
        assert set(ids(hits)) <= {"fox", "cat"}, query
        store.explain_search(query)
    # and what survives is taken literally, never as an operator
    assert found(store, "fox OR cat") == set()  # "or" is a word here, and no prompt has it
    assert found(store, "-fox") == {"fox"}
    assert found(store, "fox -snow") == {"fox"}
    assert found(store, "NEAR(fox snow)") == set()  # "near" is a word that must match
    assert found(store, "prompt:fox") == set()  # no column filters: "prompt" must match too
    assert found(store, "fox:*") == {"fox"}
    assert found(store, "fox**") == {"fox"}
    assert found(store, "\x00fox") == {"fox"}
    assert found(store, "fox\udfff") == {"fox"}
    assert found(store, "🦊 fox 🦊") == {"fox"}
    assert found(store, "fox " * 2_500) == {"fox"}
    assert found(store, "") == set() and found(store, '"') == set()


def test_random_garbage_never_raises(store: Store) -> None:
    save(store, [rec("fox", "a red fox"), rec("odd", 'it\'s a "quoted" (odd) prompt: 100% & more')])
    alphabet = (
        list("\"'*:-()&|!<>^~$\\ \t\n_.,;/@#%+=?{}[]\x00")
        + list("abcfoxé猫🦊")
        + ["NEAR", "OR", "AND", "NOT"]
    )
    rng = random.Random(6)
    for _ in range(300):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        for hit in store.search(query):
            assert hit.external_id in {"fox", "odd"}, query


# --------------------------------------------------------------------------- at scale: the plans

PG_ROWS = 1_000_000
SQLITE_ROWS = 200_000


@pytest.fixture(scope="module")
def pg_million(postgres_server_url: str) -> Iterator[Store]:
    """A PostgreSQL database with a million generations (short prompts), for this module."""
    with fresh_database(postgres_server_url, "search_scale") as url:
        store = Store(url)
        store.upgrade()
        seed(store, PG_ROWS, long=False)
        try:
            yield store
        finally:
            store.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_search_uses_the_gin_index_on_a_million_rows(pg_million: Store) -> None:
    rows = needles(PG_ROWS)
    provider = provider_of(rows[0])
    assert len(pg_million.search('"red fox"', limit=100)) == len(rows) == 10
    assert len(pg_million.search("fres*", limit=100)) == len(rows)
    hits = pg_million.search("fox snow", provider=provider, limit=100)
    assert {h.external_id for h in hits} == {f"gen-{g}" for g in rows if provider_of(g) == provider}
    cases: list[tuple[str, dict[str, Any]]] = [
        ('"red fox"', {}),
        ("fres*", {}),
        ("fox snow", {"provider": provider}),
        ("red fox", {"since": now_utc() - 30 * DAY}),
    ]
    for query, kw in cases:
        plan = "\n".join(pg_million.explain_search(query, analyze=True, **kw))
        print(f"{query!r} {kw}:\n{plan}")
        assert "ix_generation_search" in plan, plan
        assert "Seq Scan on generation" not in plan, plan


@pytest.mark.slow
def test_sqlite_search_runs_from_the_fts5_index_on_200k_rows(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'big.db'}")
    try:
        store.upgrade()
        seed(store, SQLITE_ROWS, long=False)
        rows = needles(SQLITE_ROWS)
        provider = provider_of(rows[0])
        assert len(store.search('"red fox"')) == len(rows) == 2
        hits = store.search("fox snow", provider=provider)
        assert {h.external_id for h in hits} == {
            f"gen-{g}" for g in rows if provider_of(g) == provider
        }
        cases: list[tuple[str, dict[str, Any]]] = [
            ('"red fox"', {}),
            ("fres*", {}),
            ("fox snow", {"provider": provider}),
            ("lighthouse", {"provider": "akool", "since": now_utc() - 30 * DAY}),
        ]
        for query, kw in cases:
            plan = store.explain_search(query, **kw)
            print(f"{query!r} {kw}: {plan}")
            # FTS5 drives (MATCH: "M" in its index string); each rowid is one primary-key
            # lookup in generation, never a scan of it
            assert any(
                p.startswith("SCAN gen_fts VIRTUAL TABLE INDEX") and ":M" in p for p in plan
            ), plan
            assert any(p.startswith("SEARCH g USING INTEGER PRIMARY KEY") for p in plan), plan
            assert not any(p.split()[:2] == ["SCAN", "g"] for p in plan), plan
        assert_fts_in_sync(store)
    finally:
        store.dispose()
