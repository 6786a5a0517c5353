"""``genvault search``: find generations by prompt, model and date across every account.

It reads the database and names where each file is archived (``Storage.location``);
it builds no Runtime (no API keys, no HTTP client) and writes nothing, not even a
schema upgrade (like ``export`` and ``verify``: a database that is missing or at
another revision stops it with exit 2), so it may run beside the daemon. The query
language and the indexes are described in :mod:`genvault.store.queries.search`.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from genvault.cli.common import Ctx, config_errors_exit_2, parse_since
from genvault.formatting import iso

if TYPE_CHECKING:
    from genvault.storage import Storage
    from genvault.store.queries.search import SearchHit

SNIPPET_CHARS = 90
"""How much of a prompt the table shows, around the first word that matched."""


@click.command()
@click.argument("query", nargs=-1, required=True)
@click.option("--provider", "-p", help="Only this provider (geminigen, akool, …).")
@click.option("--since", help="Only generations created since: a date (2026-11-01) or 7d / 12h.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="At most this many results, best match first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_obj
@config_errors_exit_2
def search(
    obj: Ctx,
    query: tuple[str, ...],
    provider: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Find generations by prompt text and model, across every account.

    \b
    QUERY: words that must all match (in the prompt or the model name),
    "quoted phrases" (quote them for the shell too: '"red fox"'),
    and a trailing * for a prefix (fox*). Case and, on SQLite, accents
    are ignored; there are no operators (OR, NOT, - are plain text).

    \b
    Prints each match with where its files are archived.
    Exit codes (like grep): 0 something matched, 1 nothing matched,
    2 bad configuration or a database not at this genvault's schema.
    """
    from genvault.ops.readonly import open_existing_store
    from genvault.storage import open_storage

    text = " ".join(query)
    after = parse_since(since)
    settings = obj.settings()
    storage = open_storage(settings.storage)
    store = open_existing_store(settings.database.url)
    try:
        hits = store.search(text, provider=provider, since=after, limit=limit)
    finally:
        store.dispose()
    if as_json:
        click.echo(json.dumps(_document(text, hits, storage), indent=2))
    elif hits:
        _render(text, hits, storage)
    else:
        click.echo("no generation matched", err=True)
    sys.exit(0 if hits else 1)


def _document(query: str, hits: list[SearchHit], storage: Storage) -> dict[str, Any]:
    """What ``--json`` prints: the hits, each file with its key and its location."""
    return {
        "query": query,
        "count": len(hits),
        "hits": [
            {
                "provider": h.provider,
                "account": h.account,
                "external_id": h.external_id,
                "created_at": iso(h.created_at),
                "model": h.model,
                "prompt": h.prompt,
                "status": h.status,
                "score": h.score,
                "files_total": h.files_total,
                "archived": [
                    {"storage_key": k, "location": storage.location(k)} for k in h.storage_keys
                ],
            }
            for h in hits
        ],
    }


def snippet(prompt: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """``width`` characters of ``prompt`` on one line, around the first matching word."""
    from genvault.store.queries.search import parse_query

    flat = " ".join(prompt.split())
    if len(flat) <= width:
        return flat
    lowered = flat.casefold()
    starts = [
        at
        for t in parse_query(query)
        if (word := t.text.split()[0].casefold()) and (at := lowered.find(word)) >= 0
    ]
    start = max(0, min(starts, default=0) - width // 3)
    start = min(start, len(flat) - width)
    cut = flat[start : start + width]
    return ("…" if start > 0 else "") + cut + ("…" if start + width < len(flat) else "")


def _render(query: str, hits: list[SearchHit], storage: Storage) -> None:
    """A table: one row per generation, its archived files' locations in the last column."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from genvault.store.queries.search import parse_query

    # Piped into a file or another program, nothing is folded: locations stay whole.
    console = Console(width=None if sys.stdout.isatty() else 10_000)
    words = [w for t in parse_query(query) for w in t.text.split()]
    table = Table(title=f"{len(hits)} generation{'s' if len(hits) != 1 else ''}")
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("provider/account", no_wrap=True)
    table.add_column("model")
    table.add_column("prompt")
    table.add_column("archived files", overflow="fold")
    for h in hits:
        prompt = Text(snippet(h.prompt or "", query))
        prompt.highlight_words(words, "bold", case_sensitive=False)
        files = Text("\n".join(storage.location(k) for k in h.storage_keys))
        missing = h.files_total - len(h.storage_keys)
        if missing > 0:
            files.append(("\n" if h.storage_keys else "") + f"({missing} not archived)", "yellow")
        elif not h.files_total:
            files.append(f"(no files: {h.status})", "dim")
        table.add_row(
            h.created_at.strftime("%Y-%m-%d %H:%M") if h.created_at else "-",
            f"{h.provider}/{h.account}",
            Text(h.model or "-"),
            prompt,
            files,
        )
    console.print(table)
