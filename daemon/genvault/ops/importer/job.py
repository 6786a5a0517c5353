"""``genvault import ACCOUNT DIR``: adopt files the user downloaded earlier.

For each media file under the folder (:func:`genvault.ops.importer.files.walk`):

1. its bytes must be media (the sniffing a download gets: an HTML or JSON error
   page saved as ``.jpg`` is refused);
2. it is matched to a generation of the account and to one of its files
   (:mod:`genvault.ops.importer.matching`), its size compared with the size the
   provider reports: the listing's, else a one-byte Range GET of the file's URL
   (no API key is sent, the account's network policy applies). Where the provider
   still serves the file, the sizes must be equal, else it is refused (a partial
   download); where it no longer does, the file is taken if its own format says it
   is whole (a JPEG's end marker, an MP4's boxes), and the note on the file says
   its size could not be checked;
3. the file is held (a lease in the import's name, so no archive worker of another
   replica fetches it meanwhile), copied into storage under the key the archive job
   would give it, hashed while it streams (size and sha256 as for any download),
   and only then recorded as archived, in one transaction
   (:meth:`~genvault.store.imports.ImportRecords.record_import`), its note saying it
   was imported. The generations' sidecars are (re)written at the end, as after
   an archive pass.

Files already archived are never overwritten: a second import of the same folder
does nothing. A dry run reads the folder, the database and the providers' answers
to the size probes, and writes nothing.
"""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from genvault.config import AccountSettings, Settings
from genvault.errors import StorageError
from genvault.exitcodes import ExitCode
from genvault.instance import holds_process_lock
from genvault.jobs.archive import write_sidecars
from genvault.logs import get_logger
from genvault.net.client import build_client
from genvault.net.policy import NetworkPolicy
from genvault.net.probe import range_probe
from genvault.ops.importer.files import (
    Content,
    FileChangedError,
    LocalFile,
    OpenedFile,
    completeness,
    genvault_name,
    read_sidecar,
    role_word,
    sniff,
    walk,
)
from genvault.ops.importer.matching import (
    Choice,
    Hints,
    IdIndex,
    ProviderSize,
    SizeSource,
    Verdict,
    choose,
    describe,
)
from genvault.ops.readonly import open_existing_store
from genvault.records import AssetState
from genvault.runtime import Runtime, account_policy
from genvault.storage import open_storage
from genvault.storage.keys import build_key, extension_for
from genvault.store import Outcome, Store
from genvault.store.imports import IMPORT_NOTE_PREFIX, ImportCandidate

log = get_logger("genvault.import")

_DOCUMENT_TYPES: Final = ("text/html", "application/json", "text/xml", "application/xml")
_TOTAL: Final = re.compile(r"^bytes \d+-\d+/(\d+)$")


@dataclass
class FileReport:
    """What became of one local file, and why."""

    path: str
    verdict: Verdict
    reason: str = ""
    external_id: str | None = None
    asset_id: int | None = None
    role: str | None = None
    position: int | None = None
    key: str | None = None
    """Where it went (or would go) in storage."""
    size: int | None = None
    sha256: str | None = None
    size_check: str | None = None
    """How the size was checked: served (the URL answered), announced (the listing),
    unchecked (the provider no longer serves the file)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, Verdict) else v) for k, v in asdict(self).items()}


@dataclass
class ImportReport:
    account: str
    folder: str
    dry_run: bool
    files: list[FileReport] = field(default_factory=list)
    ignored: int = 0
    """Hidden files, unfinished downloads and names of no media (sidecars, text)."""
    sidecars: int = 0
    seconds: float = 0.0

    def of(self, verdict: Verdict) -> list[FileReport]:
        return [f for f in self.files if f.verdict is verdict]

    def counts(self) -> dict[str, int]:
        return {v.value: len(self.of(v)) for v in Verdict}

    @property
    def bytes(self) -> int:
        return sum(f.size or 0 for f in self.of(Verdict.IMPORTED))

    @property
    def exit_code(self) -> ExitCode:
        """3 when a file was refused or could not be stored (its file stays pending: the
        next pass downloads it while the provider still serves it), else 0."""
        if self.of(Verdict.REFUSED) or self.of(Verdict.FAILED):
            return ExitCode.RETRYING
        return ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "folder": self.folder,
            "dry_run": self.dry_run,
            "counts": {**self.counts(), "ignored": self.ignored},
            "bytes": self.bytes,
            "sidecars": self.sidecars,
            "exit_code": int(self.exit_code),
            "files": [f.as_dict() for f in self.files],
        }


def import_owner() -> str:
    """The lease owner of one import run; no worker-lock tag (see :mod:`genvault.store.imports`)."""
    return f"import-{socket.gethostname()[:40]}-{secrets.token_hex(6)}"


class _Importer:
    def __init__(self, rt: Runtime, account: AccountSettings, dry_run: bool) -> None:
        self.rt = rt
        self.account = account
        self.dry_run = dry_run
        self.policy: NetworkPolicy = account_policy(rt.policy, account)
        self.owner = import_owner()
        self.index = IdIndex(
            rt.store.known_generations(account.name), rt.store.known_files(account.name)
        )
        self.sizes: dict[int, ProviderSize] = {}
        self.taken: set[int] = set()

    # ------------------------------------------------------------------ one file

    def one(self, f: LocalFile) -> FileReport:
        try:
            opened = OpenedFile(f.path)
        except OSError as exc:
            return FileReport(f.rel, Verdict.SKIPPED, f"cannot be read: {exc.strerror or exc}")
        with opened:
            report = self._judge(f, opened)
        return report

    def _judge(self, f: LocalFile, opened: OpenedFile) -> FileReport:
        content = sniff(opened.head, opened.size)
        if not content.types:
            return FileReport(f.rel, Verdict.REFUSED, content.problem or "not media")
        found = self._identify(f)
        if isinstance(found, FileReport):
            return found
        gen_id, hints = found
        cands = self.rt.store.generation_files(gen_id)
        choice = choose(
            cands, opened.size, content, hints, self._provider_size, frozenset(self.taken)
        )
        report = FileReport(
            f.rel,
            choice.verdict,
            choice.reason,
            external_id=self.index.external_ids.get(gen_id),
            size=opened.size,
        )
        if choice.file is not None:
            c = choice.file
            report.asset_id, report.role, report.position = c.id, c.role, c.position
            report.key = c.storage_key if choice.verdict is Verdict.ALREADY else None
        if choice.verdict is not Verdict.IMPORTED or choice.file is None:
            return report
        return self._adopt(report, opened, content, choice)

    def _identify(self, f: LocalFile) -> tuple[int, Hints] | FileReport:
        """The generation a file belongs to, and what its name says about which file."""
        stem = f.stem
        hints = Hints(stem=stem, position_role=genvault_name(stem), role=role_word(stem))
        unknown_ids = ""
        sidecar = read_sidecar(f)
        if sidecar is not None:
            by_url = {hit for u in sidecar.urls for hit in self.index.by_url(u)}
            gens = {g for g, _ in by_url} or {g for v in sidecar.ids for g in self.index.by_id(v)}
            if len(gens) == 1:
                gen = gens.pop()
                files = frozenset(a for g, a in by_url if g == gen)
                return gen, Hints(files, stem, hints.position_role, hints.role)
            if gens:
                return self._ambiguous(f, gens, f"its JSON sidecar {sidecar.name}")
            if sidecar.ids:
                unknown_ids = f"; its JSON sidecar names {', '.join(sidecar.ids[:3])}, unknown"
            elif sidecar.problem:
                unknown_ids = f"; {sidecar.problem}"
        for where, text in (("its name", stem), *((f"folder {d!r}", d) for d in f.folders)):
            match = self.index.find_in(text)
            if match is None:
                continue
            if len(match.generations) > 1:
                return self._ambiguous(f, set(match.generations), where)
            gen = next(iter(match.generations))
            return gen, Hints(match.files, stem, hints.position_role, hints.role)
        return FileReport(
            f.rel,
            Verdict.UNMATCHED,
            f"no id of a generation {self.account.name} knows in its name, its folders' or a "
            f"JSON sidecar{unknown_ids} (a sync, or `genvault track`, makes ids known)",
        )

    def _ambiguous(self, f: LocalFile, gens: set[int], where: str) -> FileReport:
        ids = sorted(self.index.external_ids.get(g, str(g)) for g in gens)
        shown = ", ".join(ids[:4]) + (", ..." if len(ids) > 4 else "")
        return FileReport(
            f.rel, Verdict.SKIPPED, f"ambiguous: {where} names {len(ids)} generations ({shown})"
        )

    def _provider_size(self, c: ImportCandidate) -> ProviderSize:
        """The size the provider reports for a file: its listing's, else its URL's answer
        to a one-byte Range GET (asked once per run)."""
        if c.expected_size is not None:
            return ProviderSize(SizeSource.ANNOUNCED, c.expected_size, "listed by the provider")
        if c.id not in self.sizes:
            self.sizes[c.id] = self._probe(c.source_url)
        return self.sizes[c.id]

    def _probe(self, url: str) -> ProviderSize:
        answer = range_probe(self.rt.media_http, url, self.policy)
        status = answer.status
        if status is None:
            return ProviderSize(SizeSource.UNKNOWN, None, answer.error or "no answer")
        if status in (403, 404, 410):
            return ProviderSize(SizeSource.GONE, None, f"HTTP {status} from its URL")
        if not answer.ok:
            return ProviderSize(SizeSource.UNKNOWN, None, f"HTTP {status} from its URL")
        if answer.content_type in _DOCUMENT_TYPES:
            return ProviderSize(
                SizeSource.GONE, None, f"its URL answers with {answer.content_type}, not the file"
            )
        total: int | None = answer.content_length if status == 200 else None
        if status == 206:
            m = _TOTAL.match((answer.content_range or "").strip())
            total = int(m.group(1)) if m else None
        if total is None:
            return ProviderSize(
                SizeSource.UNKNOWN, None, "its URL serves it without saying its size"
            )
        return ProviderSize(SizeSource.SERVED, total, "served by the provider")

    # ------------------------------------------------------------------ the copy

    def _adopt(
        self, report: FileReport, opened: OpenedFile, content: Content, choice: Choice
    ) -> FileReport:
        c, provider = choice.file, choice.size
        assert c is not None and provider is not None
        checked = provider.source in (SizeSource.SERVED, SizeSource.ANNOUNCED)
        if not checked:
            problem = completeness(opened, content)
            if problem is not None:
                report.verdict = Verdict.REFUSED
                report.reason = (
                    f"{problem}; the provider no longer serves the file ({provider.detail})"
                )
                return report
        report.size_check = provider.source.value if checked else "unchecked"
        if checked:
            note = (
                f"{IMPORT_NOTE_PREFIX} a local copy; its size matches the provider's "
                f"({provider.source.value})"
            )
        else:
            note = (
                f"{IMPORT_NOTE_PREFIX} a local copy; size not checked: the provider no longer "
                f"serves the file ({provider.detail})"
            )
            report.reason = (
                f"size not checked: the provider no longer serves the file ({provider.detail})"
            )
        ctype = content.content_type_for(c.kind)
        key = build_key(
            self.rt.settings.storage.key_template,
            provider=c.provider,
            account=c.account,
            external_id=c.external_id,
            created=c.generation_created_at,
            position=c.position,
            role=c.role,
            ext=extension_for(c.source_url, ctype, c.kind),
            kind=c.kind,
            asset_id=c.id,
        )
        report.key = key
        if self.dry_run:
            self.taken.add(c.id)
            return report
        store = self.rt.store
        if not store.claim_for_import(self.owner, c.id, self.rt.settings.archive.lease_seconds):
            report.verdict = Verdict.SKIPPED
            report.reason = (
                f"{describe(c)} is being downloaded by an archive worker right now (or was "
                "archived meanwhile): run the import again later"
            )
            return report
        try:
            stored = self.rt.storage.put(
                key,
                opened.reader(),  # type: ignore[arg-type]
                size_hint=opened.size,
                content_type=ctype,
                metadata={
                    "provider": c.provider,
                    "account": c.account,
                    "external-id": c.external_id[:512],
                    "role": c.role,
                    "source-url": c.source_url[:1024],
                    "source": "import",
                },
            )
        except (StorageError, FileChangedError, OSError) as exc:
            store.release_import(self.owner, c.id)
            report.verdict = Verdict.FAILED
            report.reason = f"not stored: {exc}"
            return report
        recorded = store.record_import(
            self.owner,
            Outcome(
                c.id,
                AssetState.ARCHIVED,
                error=note,
                size=stored.size,
                sha256=stored.sha256,
                content_type=ctype,
                storage_key=stored.key,
            ),
        )
        if not recorded:
            report.verdict = Verdict.FAILED
            report.reason = "stored, but the import's hold on the file expired and a worker took it"
            return report
        self.taken.add(c.id)
        report.sha256 = stored.sha256
        log.info(
            "import.archived",
            account=c.account,
            external_id=c.external_id,
            asset_id=c.id,
            role=c.role,
            bytes=stored.size,
            key=stored.key,
            size_check=report.size_check,
        )
        if not checked:
            log.warning(
                "import.size_unchecked",
                account=c.account,
                external_id=c.external_id,
                asset_id=c.id,
                reason=provider.detail,
            )
        return report


def import_runtime(settings: Settings, *, dry_run: bool) -> Runtime:
    """What an import needs: the store, storage and a media client; no provider API (so
    no API key). A dry run opens only an existing database, never creating or migrating
    it; a real import on SQLite, under the process lock, frees the leases a killed run
    left (as every start does)."""
    url = settings.database.url
    if dry_run:
        store = open_existing_store(url)
    else:
        store = Store(url)
        store.upgrade()
    try:
        owner = import_owner()
        if not dry_run and store.is_sqlite and holds_process_lock(url):
            voided = store.void_other_leases(owner)
            if voided:
                log.info("lease.voided", assets=voided, reason="sole process on the database")
        storage = open_storage(settings.storage)
        policy = NetworkPolicy(allow_private=settings.network.allow_private)
        http = build_client(settings.network, policy, max_connections=4)
    except BaseException:
        store.dispose()
        raise
    return Runtime(settings, store, storage, policy, {}, http, http)


def import_folder(
    rt: Runtime,
    account: AccountSettings,
    folder: Path,
    *,
    dry_run: bool = False,
    on_file: Callable[[FileReport], None] | None = None,
) -> ImportReport:
    """Adopt the media files under ``folder`` as archived files of ``account`` (module
    docstring); ``on_file`` hears about each file as it is settled."""
    started = time.monotonic()
    walked = walk(folder)
    report = ImportReport(account.name, str(folder), dry_run, ignored=walked.ignored)
    importer = _Importer(rt, account, dry_run)

    def settle(r: FileReport) -> None:
        report.files.append(r)
        if on_file is not None:
            on_file(r)

    for rel, why in walked.skipped:
        settle(FileReport(rel, Verdict.SKIPPED, why))
    for f in walked.files:
        settle(importer.one(f))
    if not dry_run and report.of(Verdict.IMPORTED):
        report.sidecars = write_sidecars(rt, accounts=[account.name])
    report.seconds = time.monotonic() - started
    log.info(
        "job.import",
        account=account.name,
        dry_run=dry_run,
        **report.counts(),
        ignored=report.ignored,
        bytes=report.bytes,
        sidecars=report.sidecars,
        seconds=round(report.seconds, 3),
    )
    return report
