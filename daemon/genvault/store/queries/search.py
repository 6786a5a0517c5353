"""Full-text search over every account's generations (prompt, model), indexed.

``genvault search`` and the status page's search box call :meth:`SearchQueries.search`.
The index is built by migration 0003 (``migrations/versions/0003_search.py``):

* **SQLite**: ``gen_fts``, an FTS5 *external-content* table over ``generation(model,
  prompt)`` (the text is not stored twice: FTS5 reads it from ``generation`` by
  rowid). New rows are indexed by the store, in the transaction that inserts them, with
  one ``INSERT ... SELECT`` (:meth:`SearchQueries.indexing_new_generations`); changes
  and deletes by two triggers on ``generation``. Tokenizer ``unicode61
  remove_diacritics 2`` (case- and accent-insensitive: ``cafe`` finds ``café``), with
  prefix indexes for 2- and 3-character prefixes so ``ca*`` does not walk the terms.
  The update trigger fires only when model or prompt really changed: the sync upsert
  and the poller rewrite those columns with every status change, and re-indexing an
  unchanged prompt would cost a delete and an insert in the index each time. There is
  no insert trigger because FTS5 writes one index segment per statement, and an
  ``executemany`` upsert is one statement per row: a trigger cost ~20 % of the sync's
  DB part, one statement per page almost nothing (``bench/README.md`` section 7).
* **PostgreSQL**: ``generation.search_tsv``, a ``tsvector`` *stored generated column*
  (``to_tsvector('simple', model || ' ' || prompt)``) with a GIN index,
  ``ix_generation_search``. Chosen over an expression index because ranking reads
  the vector of *every* row that matches (to pick the best 50 of 50,000 hits for a
  common word): stored, ``ts_rank`` reads it; with an expression index it parses
  every matching prompt again at each search. Measured on 1,000,000 rows: a word in
  5 % of them, 142 ms stored against 212 ms; a word in every row, 199 ms against
  2.3 s (``bench/search.py`` reports both). A stored column also cannot drift from
  what the query spells: an expression index is only used when the query repeats
  its expression character for character. The price is disk (about the size of the
  prompts) and a ``to_tsvector`` call per row write: ~16 % of the sync's DB part,
  about what an expression index costs too (``bench/README.md`` section 7).
  The ``simple`` configuration lowercases and does not stem: prompts come in every
  language, and English stemming would make ``cats`` find ``cat`` but mangle other
  languages' words (and a stopword list would drop words like ``it`` or ``a``). The
  two databases differ in details: PostgreSQL's ``simple`` keeps accents (``cafe``
  does not find ``café``), lowercases only ASCII in a ``C``-locale database, and its
  parser keeps some tokens whole (``flux.1-dev``, ``v2.1``) where FTS5 splits them.

**Query syntax** (the same on both): words, all of which must match (AND);
``"quoted phrases"``; a trailing ``*`` for a prefix (``fox*``, ``"red fo"*``). There
are no operators: ``OR``, ``NOT``, ``-``, ``NEAR(`` and column filters are ordinary
text. User text is never handed to ``MATCH`` or ``to_tsquery`` as syntax: it is split
here into terms, each of which becomes a quoted FTS5 string (``"term"`` / ``"term"*``)
or a bound parameter of ``phraseto_tsquery`` (which parses no operators); a prefix
becomes ``to_tsquery`` input made of quoted, escaped operands only. A query with no
usable term finds nothing (no error). At most :data:`MAX_TERMS` terms are used.

Ranking: ``bm25`` (FTS5) or ``ts_rank`` divided by ``1 + log(length)`` (PostgreSQL;
undivided, a word in a long prompt would rank as high as the same word alone), ties
newest first. Filters: ``provider`` and ``since`` (``created_at >= since``). The
archived files of the hits are read in one more query (never one per hit).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from genvault.models import UTCDateTime
from genvault.records import AssetState
from genvault.store.base import A, G, StoreBase

MAX_QUERY_CHARS: Final = 2000
"""Longer queries are cut here: nobody types more, and it bounds the work."""
MAX_TERMS: Final = 32
"""Terms after the 32nd are ignored (each one is another index lookup)."""
MAX_LIMIT: Final = 1000

FTS_TABLE: Final = "gen_fts"
"""SQLite: the FTS5 table (and the prefix of its shadow tables and triggers)."""
TSV_COLUMN: Final = "search_tsv"
"""PostgreSQL: the generated tsvector column of ``generation``."""
TSV_INDEX: Final = "ix_generation_search"
"""PostgreSQL: the GIN index on :data:`TSV_COLUMN`."""


def is_search_schema(name: str | None, type_: str) -> bool:
    """Whether a schema object belongs to the search index of migration 0003.

    They are not in the SQLModel metadata (FTS5 tables and a PostgreSQL-only generated
    column cannot be declared on both databases), so Alembic's model comparison must
    be told to leave them alone: pass this as ``include_name`` (negated).
    """
    if name is None:
        return False
    if type_ == "table":
        return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")
    if type_ == "column":
        return name == TSV_COLUMN
    if type_ == "index":
        return name == TSV_INDEX
    return False


# --------------------------------------------------------------------------- the query


@dataclass(frozen=True, slots=True)
class Term:
    """One thing that must match: a word or a quoted phrase, maybe a prefix."""

    text: str
    """As typed (punctuation kept: each database's own tokenizer splits it)."""
    prefix: bool = False


_TOKEN = re.compile(r'"(?P<phrase>[^"]*)(?:"|$)(?P<pstar>\*?)|(?P<word>[^\s"]+)')
_WORD_CHARS = re.compile(r"[^\W_]+")
"""Runs of letters and digits: what both tokenizers keep (``_`` splits, as in FTS5)."""


def _clean(text: str) -> str:
    """Control, format and surrogate characters become spaces (PostgreSQL refuses NUL)."""
    return "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)


def parse_query(query: str) -> list[Term]:
    """The terms of a user's query; empty when nothing in it can match anything."""
    terms: list[Term] = []
    for m in _TOKEN.finditer(_clean(query[:MAX_QUERY_CHARS])):
        if m.group("word") is not None:
            word = m.group("word")
            text, prefix = word.rstrip("*"), word.endswith("*")
        else:
            text, prefix = " ".join(m.group("phrase").split()), bool(m.group("pstar"))
        if _WORD_CHARS.search(text):
            terms.append(Term(text, prefix))
        if len(terms) == MAX_TERMS:
            break
    return terms


def fts5_match(terms: Sequence[Term]) -> str:
    """The FTS5 ``MATCH`` string: each term a quoted string, so no operator survives.

    Inside double quotes FTS5 only runs its tokenizer (``""`` is a literal quote), and
    a ``*`` right after the closing quote makes the phrase's last token a prefix.
    Phrases side by side are ANDed.
    """
    return " ".join(
        '"' + t.text.replace('"', '""') + '"' + ("*" if t.prefix else "") for t in terms
    )


def _tsquery_literal(lexeme: str) -> str:
    """A quoted ``to_tsquery`` operand (``'`` doubled, ``\\`` escaped)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _pg_prefix(text: str) -> list[str]:
    """``to_tsquery`` inputs whose OR is the prefix term ``text*``.

    Its letter-and-digit runs as a phrase with the last one a prefix (``gpt-4*`` ->
    ``'gpt' <-> '4':*``, which finds ``gpt-4o``); and for one word with punctuation,
    the word quoted whole, because PostgreSQL's parser keeps some such words as one
    token (``flux.1-d*`` -> ``'flux.1-d':*`` finds ``flux.1-dev``).
    """
    runs = _WORD_CHARS.findall(text)
    split = " <-> ".join(_tsquery_literal(r) for r in runs) + ":*"
    if " " in text or runs == [text]:
        return [split]
    return [split, _tsquery_literal(text) + ":*"]


def _pg_tsquery(terms: Sequence[Term], params: dict[str, Any]) -> str:
    """SQL for the tsquery of ``terms`` (every value bound in ``params``, never inlined)."""
    parts: list[str] = []
    for i, t in enumerate(terms):
        if not t.prefix:
            params[f"t{i}"] = t.text
            parts.append(f"phraseto_tsquery('simple', :t{i})")
            continue
        alternatives = []
        for j, source in enumerate(_pg_prefix(t.text)):
            params[f"t{i}_{j}"] = source
            alternatives.append(f"to_tsquery('simple', :t{i}_{j})")
        parts.append("(" + " || ".join(alternatives) + ")")
    return "(" + " && ".join(parts) + ")"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One generation that matched, and where its archived files are."""

    generation_id: int
    provider: str
    account: str
    external_id: str
    created_at: datetime | None
    model: str | None
    prompt: str | None
    status: str
    storage_keys: tuple[str, ...]
    """Storage keys of the generation's archived files, by position."""
    files_total: int = 0
    """All of its files that genvault means to archive (archived, pending, failed,
    lost; not skipped roles): ``len(storage_keys) < files`` means some are not saved."""
    score: float = 0.0
    """Relevance, higher is better (bm25 negated on SQLite, ts_rank on PostgreSQL);
    comparable within one result list only."""


_COLUMNS = "g.id, g.provider, g.account, g.external_id, g.created_at, g.model, g.prompt, g.status"


class SearchQueries(StoreBase):
    _fts_table_seen = False

    def _has_fts_table(self, conn: Connection) -> bool:
        """Whether the schema has the index yet (it is older than 0003 only while a
        migration test walks the revisions); a yes is remembered, a no asked again."""
        if not self._fts_table_seen:
            self._fts_table_seen = (
                conn.execute(
                    sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :t"),
                    {"t": FTS_TABLE},
                ).first()
                is not None
            )
        return self._fts_table_seen

    @contextmanager
    def indexing_new_generations(self, conn: Connection) -> Iterator[None]:
        """Around a statement that inserts generations, in its transaction: on SQLite,
        index the rows it inserted, in one statement. (PostgreSQL's generated column
        needs nothing.)

        Writes on SQLite hold the database (``BEGIN IMMEDIATE``), and a new rowid is
        always above the largest one, so "inserted here" is exactly "id above the
        maximum seen before": no list of ids to carry around.
        """
        if not self.is_sqlite or not self._has_fts_table(conn):
            yield
            return
        top = conn.execute(sa.select(sa.func.coalesce(sa.func.max(G.c.id), 0))).scalar_one()
        yield
        conn.execute(
            sa.text(
                f"INSERT INTO {FTS_TABLE} (rowid, model, prompt)"
                " SELECT id, model, prompt FROM generation WHERE id > :top"
            ),
            {"top": top},
        )

    def search(
        self,
        query: str,
        *,
        provider: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """Generations matching ``query`` (see the module docstring), best match first."""
        built = self._search_sql(query, provider=provider, since=since, limit=limit)
        if built is None:
            return []
        sql, binds = built
        stmt = sa.text(sql).bindparams(*binds).columns(created_at=UTCDateTime())
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
            files = self._archived_files(conn, [r.id for r in rows])
        return [
            SearchHit(
                generation_id=r.id,
                provider=r.provider,
                account=r.account,
                external_id=r.external_id,
                created_at=r.created_at,
                model=r.model,
                prompt=r.prompt,
                status=r.status,
                storage_keys=tuple(files[r.id][0]),
                files_total=files[r.id][1],
                score=float(r.score),
            )
            for r in rows
        ]

    def explain_search(
        self,
        query: str,
        *,
        provider: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        analyze: bool = False,
    ) -> list[str]:
        """The plan of :meth:`search`'s main query (for tests and ``bench/search.py``).

        ``EXPLAIN QUERY PLAN`` rows on SQLite, ``EXPLAIN`` lines on PostgreSQL
        (``analyze`` runs it and adds timings there; it is read-only).
        """
        built = self._search_sql(query, provider=provider, since=since, limit=limit)
        if built is None:
            return []
        sql, binds = built
        if self.is_sqlite:
            prefix = "EXPLAIN QUERY PLAN "
        else:
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
        explain = sa.text(prefix + sql).bindparams(*binds)
        with self.engine.connect() as conn:
            rows = conn.execute(explain).all()
        if self.is_sqlite:
            return [str(r[-1]) for r in rows]
        return [str(r[0]) for r in rows]

    def _search_sql(
        self, query: str, *, provider: str | None, since: datetime | None, limit: int
    ) -> tuple[str, list[sa.BindParameter[Any]]] | None:
        """The ranked, filtered query for ``query`` and its parameters, or None when the
        query has no usable term. Only fixed fragments go into the SQL text."""
        terms = parse_query(query)
        if not terms:
            return None
        params: dict[str, Any] = {"limit": max(1, min(int(limit), MAX_LIMIT))}
        filters = ""
        if provider is not None:
            filters += " AND g.provider = :provider"
            params["provider"] = provider
        if since is not None:
            filters += " AND g.created_at >= :since"
            params["since"] = since
        if self.is_sqlite:
            # FTS5 drives: its MATCH yields rowids, each joined to generation by its
            # primary key. bm25() is lower for better matches.
            params["match"] = fts5_match(terms)
            sql = (
                f"SELECT {_COLUMNS}, -bm25({FTS_TABLE}) AS score"
                f" FROM {FTS_TABLE} JOIN generation AS g ON g.id = {FTS_TABLE}.rowid"
                f" WHERE {FTS_TABLE} MATCH :match{filters}"
                " ORDER BY score DESC, g.created_at DESC, g.id DESC LIMIT :limit"
            )
        else:
            tsq = _pg_tsquery(terms, params)
            sql = (
                f"SELECT {_COLUMNS}, ts_rank(g.{TSV_COLUMN}, {tsq}, 1) AS score"
                f" FROM generation AS g WHERE g.{TSV_COLUMN} @@ {tsq}{filters}"
                " ORDER BY score DESC, g.created_at DESC, g.id DESC LIMIT :limit"
            )
        binds = [
            sa.bindparam(k, v, type_=UTCDateTime() if k == "since" else None)
            for k, v in params.items()
        ]
        return sql, binds

    def _archived_files(
        self, conn: sa.Connection, generation_ids: list[int]
    ) -> dict[int, tuple[list[str], int]]:
        """Per generation: its archived files' storage keys by position, and its file count."""
        found: dict[int, tuple[list[str], int]] = defaultdict(lambda: ([], 0))
        if not generation_ids:
            return found
        rows = conn.execute(
            sa.select(A.c.generation_id, A.c.state, A.c.storage_key)
            .where(
                A.c.generation_id.in_(generation_ids),
                A.c.state != AssetState.SKIPPED.value,
            )
            .order_by(A.c.generation_id, A.c.position)
        )
        for r in rows:
            keys, count = found[r.generation_id]
            if r.state == AssetState.ARCHIVED.value and r.storage_key:
                keys.append(r.storage_key)
            found[r.generation_id] = (keys, count + 1)
        return found
