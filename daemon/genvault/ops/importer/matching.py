"""Which generation, and which of its files, a local file is: the import's judgement.

Two steps, both refusing to guess:

1. **The generation** (:class:`IdIndex`): the provider's id in a JSON sidecar, else
   in the file's name, else in the name of a folder it is in. Every external id the
   database knows for the account is indexed verbatim and in the forms file names
   give it (``grok:abc`` as ``grok_abc``, ``grok-abc``, ``grokabc``, ``abc``,
   genvault's own sanitized key form), and so is the last part of every file's URL
   (a file saved under the name the CDN gave it). A name is searched for those at
   word boundaries only, longest match first; ids of two generations in one name
   are an ambiguity, not a choice.
2. **The file of that generation** (:func:`choose`): files of the right kind
   (image, video, audio, by the bytes) not archived yet; among them the one whose
   size the provider reports (or announced) equals the local size. A name that
   names one file exactly (the URL's own file name, a URL in the sidecar, genvault's
   ``NN-role`` names) confines the choice to that file: if its size differs, the
   copy is refused, never taken for another file of the same size. A role word
   (``thumb``, ``last_frame``) only breaks ties. A file whose size no one can tell
   any more is taken only when it is the one candidate left.
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

from genvault.identity import url_key
from genvault.ops.importer.files import Content, spans
from genvault.records import AssetState
from genvault.storage.keys import sanitize_component
from genvault.store.imports import ImportCandidate, KnownFile

MIN_ID_IN_NAME: Final = 6
"""An id (or URL name) shorter than this matches only a whole name, never part of one."""
MIN_URL_NAME: Final = 8
"""A URL's file name shorter than this (``0.jpg``) names no generation by itself."""
_UNSAFE_RUN: Final = re.compile(r"[^A-Za-z0-9._-]+")


class Verdict(enum.StrEnum):
    """What became of one local file."""

    IMPORTED = "imported"
    ALREADY = "already_archived"
    REFUSED = "refused"
    """It is (or may be) a file genvault wants, but not a good copy: cut short, not
    media, a size that cannot be checked while the provider is reachable."""
    UNMATCHED = "unmatched"
    """No generation of the account, or no file of that generation, it can be."""
    SKIPPED = "skipped"
    """Ambiguous (several files it could be), a link leading out of the folder, a file
    an archive worker holds right now."""
    FAILED = "failed"
    """Storage refused the copy (nothing was recorded)."""


class SizeSource(enum.StrEnum):
    SERVED = "served"
    """The file's URL answered just now and said its size."""
    ANNOUNCED = "announced"
    """The provider's listing gave the size."""
    GONE = "gone"
    """The provider no longer serves the file (403/404/410): no size to compare."""
    UNKNOWN = "unknown"
    """The provider could not be asked (an error, a timeout): try again later."""


@dataclass(frozen=True, slots=True)
class ProviderSize:
    source: SizeSource
    size: int | None
    detail: str


# --------------------------------------------------------------------------- ids


def id_variants(external_id: str) -> set[str]:
    """The forms an external id takes in file names (see the module docstring)."""
    out = {external_id, sanitize_component(external_id), quote(external_id, safe="")}
    for sep in ("_", "-", "", " "):
        out.add(_UNSAFE_RUN.sub(sep, external_id))
    _, colon, rest = external_id.partition(":")
    if colon and len(rest) >= MIN_URL_NAME:
        out |= id_variants(rest)  # "grok:<uuid>" saved as "<uuid>"
    return {v.strip() for v in out if v.strip()}


def url_name(url: str) -> str:
    """The file name of a URL without its extension (``/cdn/x/abc_thumb.jpg`` -> ``abc_thumb``)."""
    try:
        name = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
    except ValueError:
        return ""
    base, dot, _ = name.rpartition(".")
    return base if dot and base else name


@dataclass(frozen=True, slots=True)
class NameMatch:
    generations: frozenset[int]
    files: frozenset[int]
    """Files whose URL's file name the text holds (the strongest hint there is), unless
    that part of the text is also a generation's id and not the whole text."""
    found: tuple[str, ...]
    """The matched parts of the text."""


class IdIndex:
    """The account's external ids and URL file names, for finding them in names."""

    def __init__(self, generations: Iterable[tuple[int, str]], files: Iterable[KnownFile]):
        self.external_ids: dict[int, str] = {}
        self._ids: dict[str, set[int]] = defaultdict(set)
        self._names: dict[str, set[tuple[int, int]]] = defaultdict(set)
        self._url_keys: dict[str, set[tuple[int, int]]] = defaultdict(set)
        for gen_id, external_id in generations:
            self.external_ids[gen_id] = external_id
            for v in id_variants(external_id):
                self._ids[v.casefold()].add(gen_id)
        for f in files:
            self._url_keys[f.url_key].add((f.generation_id, f.asset_id))
            name = url_name(f.source_url)
            if len(name) >= MIN_URL_NAME:
                self._names[name.casefold()].add((f.generation_id, f.asset_id))

    def __len__(self) -> int:
        return len(self.external_ids)

    def by_id(self, value: str) -> set[int]:
        """Generations whose id (in any of its forms) is ``value`` exactly."""
        return set(self._ids.get(value.strip().casefold(), ()))

    def by_url(self, url: str) -> set[tuple[int, int]]:
        """(generation, file) of the file at ``url`` (signatures aside)."""
        try:
            return set(self._url_keys.get(url_key(url), ()))
        except ValueError:
            return set()

    def find_in(self, text: str) -> NameMatch | None:
        """The generations (and files) a name holds at word boundaries; longest first."""
        hits: list[tuple[int, int, set[int], set[tuple[int, int]]]] = []
        for i, j in spans(text):
            if j - i < MIN_ID_IN_NAME and (i, j) != (0, len(text)):
                continue
            key = text[i:j].casefold()
            gens, named = self._ids.get(key), self._names.get(key)
            if gens or named:
                hits.append((i, j, set(gens or ()), set(named or ())))
        if not hits:
            return None
        longest = [
            h
            for h in hits
            if not any(o[0] <= h[0] and h[1] <= o[1] and o[1] - o[0] > h[1] - h[0] for o in hits)
        ]
        generations = {g for h in longest for g in h[2]} | {g for h in longest for g, _ in h[3]}
        # Part of a name that is a generation's id names the generation, not one of its
        # files, even where a URL's file name is that id (``<uuid>_thumbnail``).
        whole = (0, len(text))
        files = {a for h in longest if not h[2] or h[:2] == whole for _, a in h[3]}
        return NameMatch(
            frozenset(generations), frozenset(files), tuple(text[h[0] : h[1]] for h in longest)
        )


# --------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class Hints:
    """What a name (or sidecar) says about which file of the generation it is."""

    files: frozenset[int] = frozenset()
    """Files named exactly: by URL (sidecar), or by the URL's file name."""
    stem: str = ""
    """The local name without its extension, compared with each file's URL name."""
    position_role: tuple[int, str] | None = None
    """genvault's own ``NN-role`` name."""
    role: str | None = None
    """A role word in the name (``thumb``, ``last_frame``, ``upscale``, ``reference``)."""

    def strong(self, cands: Sequence[ImportCandidate]) -> list[ImportCandidate]:
        """The candidates the name (or sidecar) names exactly: by URL, by the URL's file
        name, by genvault's ``NN-role`` name. The size must then agree with one of them."""
        stem = self.stem.casefold()
        return [
            c
            for c in cands
            if c.id in self.files
            or (bool(stem) and url_name(c.source_url).casefold() == stem)
            or self.position_role == (c.position, c.role)
        ]

    def weak(self, cands: Sequence[ImportCandidate]) -> list[ImportCandidate]:
        """The candidates of the role a word in the name says (a tie-breaker only)."""
        return [c for c in cands if self.role is not None and c.role == self.role]


@dataclass(frozen=True, slots=True)
class Choice:
    verdict: Verdict
    reason: str
    file: ImportCandidate | None = None
    size: ProviderSize | None = None


def describe(c: ImportCandidate) -> str:
    return f"{c.role} #{c.position} ({c.kind})"


def _kinds(content: Content) -> str:
    return " or ".join(sorted(content.kinds)) or "media"


def choose(
    cands: Sequence[ImportCandidate],
    size: int,
    content: Content,
    hints: Hints,
    provider_size: Callable[[ImportCandidate], ProviderSize],
    taken: frozenset[int] = frozenset(),
) -> Choice:
    """Which file of a generation a local file of ``size`` bytes is (module docstring).

    ``taken``: files already imported in this run (in a dry run the database does not
    say so). ``provider_size`` is asked only about files that could be it.
    """
    if not cands:
        return Choice(Verdict.UNMATCHED, "the generation has no files (yet)")
    external_id = cands[0].external_id
    fit = [c for c in cands if c.kind in content.kinds or c.kind == "other"]
    if not fit:
        has = ", ".join(describe(c) for c in cands)
        return Choice(
            Verdict.UNMATCHED, f"generation {external_id} has no {_kinds(content)} file ({has})"
        )
    strong = hints.strong(fit)
    scope = strong or fit  # a file the name names exactly is that file or none

    def archived(c: ImportCandidate) -> bool:
        return c.state is AssetState.ARCHIVED or c.id in taken

    open_ = [
        c for c in scope if not archived(c) and (c.state is not AssetState.SKIPPED or c in strong)
    ]
    done = [c for c in scope if archived(c)]
    if not open_:
        if done:
            return _already(done, size)
        roles = ", ".join(sorted({c.role for c in fit}))
        return Choice(
            Verdict.UNMATCHED,
            f"generation {external_id}'s {_kinds(content)} files are of roles the config does "
            f"not archive ({roles}); a file named as its URL names it is imported all the same",
        )
    weak = hints.weak(open_)
    sizes = {c.id: provider_size(c) for c in open_}
    exact = [c for c in open_ if sizes[c.id].size == size]
    if len(exact) == 1:
        return Choice(Verdict.IMPORTED, "", exact[0], sizes[exact[0].id])
    if exact:
        narrowed = [c for c in exact if c in weak]
        if len(narrowed) == 1:
            return Choice(Verdict.IMPORTED, "", narrowed[0], sizes[narrowed[0].id])
        which = ", ".join(describe(c) for c in exact)
        return Choice(
            Verdict.SKIPPED,
            f"ambiguous: {len(exact)} files of generation {external_id} have {size} bytes "
            f"({which}) and the name does not say which",
        )
    if any(c.size == size for c in done):
        return _already(done, size)
    pool = [c for c in open_ if c in weak] or open_
    unknown = [c for c in pool if sizes[c.id].size is None]
    differ = [c for c in pool if sizes[c.id].size is not None]
    if not unknown:
        if len(differ) == 1:
            c = differ[0]
            p = sizes[c.id]
            word = "serves" if p.source is SizeSource.SERVED else "announced"
            return Choice(
                Verdict.REFUSED,
                f"{size} bytes, but the provider {word} {p.size}: a partial download?",
                c,
                p,
            )
        listed = ", ".join(f"{describe(c)}: {sizes[c.id].size}" for c in differ)
        return Choice(
            Verdict.REFUSED,
            f"{size} bytes matches none of generation {external_id}'s {_kinds(content)} files "
            f"({listed}): a partial download?",
        )
    if len(unknown) > 1 or differ:
        maybe = ", ".join(describe(c) for c in unknown)
        also = f", or a partial copy of {', '.join(describe(c) for c in differ)}" if differ else ""
        return Choice(
            Verdict.SKIPPED,
            f"ambiguous: it may be {maybe} of generation {external_id} (no size to compare"
            f"{also}); name it as its URL names it, or genvault's NN-role form",
        )
    c = unknown[0]
    p = sizes[c.id]
    if p.source is SizeSource.UNKNOWN:
        return Choice(
            Verdict.REFUSED,
            f"its size could not be checked ({p.detail}): run the import again later",
            c,
            p,
        )
    return Choice(Verdict.IMPORTED, "", c, p)


def _already(done: Sequence[ImportCandidate], size: int) -> Choice:
    same = [c for c in done if c.size == size]
    c = (same or list(done))[0]
    how = "imported" if c.imported else "downloaded"
    if same:
        return Choice(Verdict.ALREADY, f"archived already ({how}, same size)", c)
    sizes = ", ".join(f"{describe(d)}: {d.size} bytes" for d in done)
    return Choice(
        Verdict.ALREADY,
        f"archived already ({how}; {sizes}); this copy has {size} bytes and was not used",
        c,
    )
