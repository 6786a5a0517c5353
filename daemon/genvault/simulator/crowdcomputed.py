"""Simulator of the CrowdComputed 群计AI Open API (global API), with its data CDN.

Follows seed 000 (``GET /api/v1/generate/history``) and the ``cc-openapi-docs``
pages summarized in ``providers.md`` section 1: header ``token`` auth (the docs'
raw ``Authorization: <key>`` is accepted too), the ``{"code", "message", "data"}``
envelope with errors as ``{"code": "Failed", "message": "unauthorized", "data": null}``
on HTTP 200 (knob ``error_http_status``), history per workflow, ``/query/status``
by ``taskId``, statuses ``waiting``/``generating``/``finished``/``failed`` and
``startTime``/``endTime`` in Unix seconds.

The data is deterministic for a seed (task ids, output ids, URLs, sizes, which task
runs which workflow), so tests know every media URL and its SHA-256 in advance
(:meth:`CrowdComputedSimulator.expected_media`). Timestamps are relative to the
simulator clock at construction. Traps for the archiver, as the real API behaves or
is believed to:

* history needs ``workflow`` (``"workflow is empty"`` without it) and pages each
  workflow on its own, newest first; both ``page_index``/``page_size`` (the seed)
  and ``pageIndex``/``pageSize`` (the docs) are understood (knob ``accept_paging``
  restricts that), and the spelling each request used is counted in
  :attr:`CrowdComputedSimulator.paging_seen`;
* one task has several outputs and an output several URLs;
* every ``relative_every``-th task lists relative URLs (``dev/images/task/...``, the
  callback example's shape), served under ``/data/`` like the absolute ones, so they
  resolve against :attr:`~CrowdComputedSimulator.account_options` ``media_base``;
* some outputs carry ``reSchedule: true`` (moved to another node once);
* failed tasks carry no message at all; ``empty_count`` tasks are ``finished`` with
  no URL;
* the newest ``processing_count`` tasks are ``waiting`` (no start time, a queue
  position), then ``generating`` (a start time), then ``finished`` once
  ``processing_seconds`` have passed since server start;
* files live ``retention_hours`` after ``endTime``; ``expired_count`` old tasks are
  past that, their URLs answer 403;
* the history endpoint is marked "Developing" and workflows get renamed: for the
  ``rejected_workflows`` it answers ``{"code": "Failed", "message": "invalid params",
  "data": null}`` (HTTP 200 by default) as for an unknown workflow, although their
  tasks exist and ``/query/status`` answers for them.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from genvault.providers.crowdcomputed import WORKFLOWS  # the seed's list, one copy
from genvault.simulator import media
from genvault.simulator.base import (
    ExpectedFile,
    ProviderSim,
    check_non_negative,
    config_from_knobs,
    expected_file,
)
from genvault.simulator.faults import UNCHANGED, mangle_keys
from genvault.simulator.messages import Request, Response

API_PATH: Final = ""
"""The API lives at the host root: ``/api/v1/...``."""
DATA: Final = "/data/"
"""Where the fake ``data.crowdcomputed.cc`` serves files on the simulator."""
HISTORY: Final = "/api/v1/generate/history"
STATUS: Final = "/api/v1/query/status"

KNOWN_WORKFLOWS: Final[frozenset[str]] = frozenset(WORKFLOWS)
"""The 25 workflow ids of the seed; any other value is ``"invalid params"``."""

Outcome = Literal["finished", "failed", "empty"]
AcceptPaging = Literal["both", "snake", "camel"]

_FIRST_TASK_ID: Final = 582_079_535_692_914_438  # the docs' example id
_SPELLINGS: Final = {"snake": ("page_index", "page_size"), "camel": ("pageIndex", "pageSize")}
"""Paging parameter names: the seed's curl (snake) and the docs (camel)."""


@dataclass(frozen=True, slots=True)
class CrowdComputedSimConfig:
    """Knobs of the CrowdComputed simulator. Counts larger than ``count`` are clamped."""

    api_key: str = "sim-crowdcomputed-key"
    count: int = 24
    seed: int = 0
    workflows: tuple[str, ...] = ("text-to-image", "text-to-video", "upscaler")
    """Workflows the tasks are spread over (cycled, so each gets some)."""
    image_size: int = 150_000
    video_size: int = 1_500_000
    processing_count: int = 3
    processing_seconds: float = 2.0
    failed_count: int = 2
    empty_count: int = 1
    """Tasks that end ``finished`` with no URL at all."""
    expired_count: int = 0
    relative_every: int = 3
    """Every n-th task lists relative URLs (0: none)."""
    reschedule_every: int = 4
    """Every n-th task's first output was rescheduled (0: none)."""
    retention_hours: float = 24.0
    default_page_size: int = 20
    max_page_size: int = 100
    error_http_status: int | None = 200
    """HTTP status of error bodies; None = 401/404/400 by meaning instead of always 200."""
    accept_paging: AcceptPaging = "both"
    """Which paging spelling(s) the history endpoint understands; others are ignored."""
    accept_authorization: bool = True
    """Also accept ``Authorization: <key>`` raw (the docs' examples), not only ``token``."""
    rejected_workflows: tuple[str, ...] = ()
    """Workflows whose history is refused like an unknown one: ``{"code": "Failed",
    "message": "invalid params", "data": null}`` (on ``error_http_status``, 200 by
    default). Their tasks still exist and ``/query/status`` answers for them."""
    port: int = 0
    clock_anchor: datetime | None = None
    """Pretend the simulation starts at this instant (reproducible timestamps)."""

    def __post_init__(self) -> None:
        for name in ("workflows", "rejected_workflows"):  # JSON knobs give lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_non_negative(self)
        if not self.workflows or any(w not in KNOWN_WORKFLOWS for w in self.workflows):
            raise ValueError(f"workflows must be non-empty ids of {sorted(KNOWN_WORKFLOWS)}")
        if any(w not in KNOWN_WORKFLOWS for w in self.rejected_workflows):
            raise ValueError(f"rejected_workflows must be ids of {sorted(KNOWN_WORKFLOWS)}")
        if self.max_page_size < 1 or self.default_page_size < 1:
            raise ValueError("page sizes must be >= 1")
        if self.retention_hours <= 0:
            raise ValueError("retention_hours must be > 0")
        if self.accept_paging not in ("both", "snake", "camel"):
            raise ValueError("accept_paging must be both, snake or camel")


@dataclass(frozen=True, slots=True)
class _File:
    """One result file: where the CDN serves it and how the API spells its URL."""

    path: str
    kind: media.MediaKind
    size: int
    relative: bool

    @property
    def relative_url(self) -> str:
        return self.path.removeprefix(DATA)


@dataclass(frozen=True, slots=True)
class _Output:
    output_id: str
    files: tuple[_File, ...]
    estimate_ms: int
    reschedule: bool


@dataclass(frozen=True, slots=True)
class _Task:
    """One task with its time-independent facts; status is derived at request time."""

    task_id: str
    workflow: str
    outcome: Outcome
    processing: bool
    start_s: int
    end_s: int
    queue_order: int
    outputs: tuple[_Output, ...]

    @property
    def ended_at(self) -> datetime:
        return datetime.fromtimestamp(self.end_s, UTC)

    def files(self) -> list[_File]:
        return [f for o in self.outputs for f in o.files]


class _Builder:
    """Builds the deterministic task list from a seeded RNG, newest first."""

    def __init__(self, cfg: CrowdComputedSimConfig, now: datetime) -> None:
        self.cfg = cfg
        self.rng = random.Random(f"crowdcomputed:{cfg.seed}")
        self.now_s = int(now.timestamp())

    def ages(self) -> list[float]:
        """Age in seconds of each task's end, newest first."""
        cfg, r = self.cfg, self.rng
        keep = cfg.retention_hours * 3600
        n_proc = min(cfg.processing_count, cfg.count)
        n_exp = min(cfg.expired_count, cfg.count - n_proc)
        n_mid = cfg.count - n_proc - n_exp
        mid = sorted(r.uniform(120.0, 0.8 * keep) for _ in range(n_mid))
        old = sorted(r.uniform(1.1 * keep, 3 * keep) for _ in range(n_exp))
        return [0.0] * n_proc + mid + old

    def build(self) -> list[_Task]:
        cfg, r = self.cfg, self.rng
        ages = self.ages()
        n_proc = min(cfg.processing_count, cfg.count)
        n_exp = min(cfg.expired_count, cfg.count - n_proc)
        pool = list(range(n_proc, cfg.count - n_exp))
        bad = r.sample(pool, min(cfg.failed_count + cfg.empty_count, len(pool)))
        failed = set(bad[: cfg.failed_count])
        empty = set(bad[cfg.failed_count :])
        ids: list[int] = []
        current = _FIRST_TASK_ID
        for _ in range(cfg.count):  # snowflake-like: older tasks have smaller ids
            current += r.randint(10**9, 10**11)
            ids.append(current)
        ids.reverse()
        tasks = []
        for i, age in enumerate(ages):
            outcome: Outcome = "failed" if i in failed else "empty" if i in empty else "finished"
            tasks.append(self.task(i, str(ids[i]), age, outcome, processing=i < n_proc))
        return tasks

    def task(
        self, i: int, task_id: str, age: float, outcome: Outcome, *, processing: bool
    ) -> _Task:
        cfg, r = self.cfg, self.rng
        workflow = cfg.workflows[i % len(cfg.workflows)]
        video = "video" in workflow
        took = int((90 if video else 12) * (0.5 + r.random())) + 1
        if processing:
            start = self.now_s
            end = int(self.now_s + cfg.processing_seconds)
        else:
            end = self.now_s - int(age)
            start = end - took
        relative = cfg.relative_every > 0 and i % cfg.relative_every == cfg.relative_every - 1
        n_out = 1 if video or workflow == "upscaler" else 1 + (i // len(cfg.workflows)) % 3
        outputs = []
        for n in range(n_out):
            urls = 2 if n == 0 and not video and i % 4 == 0 else 1
            files = tuple(self.file(task_id, video, relative) for _ in range(urls))
            outputs.append(
                _Output(
                    output_id=f"{task_id}_{n + 1:04d}",
                    files=files if outcome == "finished" else (),
                    estimate_ms=(60_000 if video else 15_000),
                    reschedule=outcome == "failed"
                    or (cfg.reschedule_every > 0 and n == 0 and i % cfg.reschedule_every == 1),
                )
            )
        return _Task(
            task_id=task_id,
            workflow=workflow,
            outcome=outcome,
            processing=processing,
            start_s=start,
            end_s=end,
            queue_order=1 + i,
            outputs=tuple(outputs),
        )

    def file(self, task_id: str, video: bool, relative: bool) -> _File:
        stamp = "2025" + "".join(self.rng.choices("0123456789", k=16))
        env = "dev" if relative else "prod"
        kind: media.MediaKind = "video" if video else "image"
        folder, ext = ("videos", "mp4") if video else ("images", "jpg")
        size = self.cfg.video_size if video else self.cfg.image_size
        path = f"{DATA}{env}/{folder}/task/{task_id}/output/{stamp}.{ext}"
        return _File(path, kind, size, relative)


def _business_error() -> Response:
    """``malformed="business_error"``: the documented ``{"code": "Failed"}`` envelope, HTTP 200."""
    return Response.json({"code": "Failed", "message": "invalid params", "data": None})


def _error(status: int, code: str, message: str) -> Response:
    """CrowdComputed's envelope for every error (faults and unknown routes too)."""
    return Response.json({"code": "Failed", "message": message, "data": None}, status)


_NUMERIC_KEYS: Final = (
    "total",
    "pageSize",
    "pageIndex",
    "estimateMs",
    "queueOrder",
    "startTime",
    "endTime",
)


def _spoil(key: str, value: Any) -> Any:
    """``wrong_types`` fault: numbers as strings, booleans as text, empty lists as null."""
    if key in _NUMERIC_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if key == "reSchedule" and isinstance(value, bool):
        return str(value).lower()
    if key == "urls" and value == []:
        return None
    return UNCHANGED


def _mangle(payload: Any) -> Any:
    return mangle_keys(payload, _spoil)


class CrowdComputedSimulator(ProviderSim[CrowdComputedSimConfig]):
    """The CrowdComputed global API on loopback. Use :func:`create` or pass a config."""

    name = "crowdcomputed"
    api_path = API_PATH
    media_prefixes = (DATA,)
    error_response = _error
    wrong_types = _mangle
    business_error = _business_error

    def __init__(self, config: CrowdComputedSimConfig | None = None) -> None:
        super().__init__(config or CrowdComputedSimConfig())
        cfg, server = self.config, self.server
        self._tasks = _Builder(cfg, server.clock.now()).build()
        self._by_id = {t.task_id: t for t in self._tasks}
        self._seen_lock = threading.Lock()
        self.paging_seen: Counter[str] = Counter()
        """Paging spelling of each history request: ``snake``, ``camel``, ``both``, ``none``."""
        keep = timedelta(hours=cfg.retention_hours)
        for t in self._tasks:
            delay = cfg.processing_seconds if t.processing else 0.0
            for f in t.files():
                server.add_media(
                    f.path, self._spec(f), expires_at=t.ended_at + keep, available_after_s=delay
                )
        server.route("GET", HISTORY + "/?", self._history, name="history")
        server.route("GET", STATUS + "/?", self._status, name="status")

    @property
    def account_options(self) -> dict[str, Any]:
        """``media_base``: relative URLs resolve against this server's ``/data/``."""
        return {"media_base": self.server.url(DATA)}

    # ------------------------------------------------------------------ truth for tests

    @property
    def generations(self) -> list[dict[str, Any]]:
        """Every task as ``/query/status`` would return it right now, newest first."""
        return [self._render(t) for t in self._tasks]

    @property
    def workflow_of(self) -> dict[str, str]:
        """taskId -> the workflow it ran (history lists it there)."""
        return {t.task_id: t.workflow for t in self._tasks}

    @property
    def outcomes(self) -> dict[str, Outcome]:
        """taskId -> how it ends: ``finished`` (with files), ``failed`` or ``empty``."""
        return {t.task_id: t.outcome for t in self._tasks}

    @property
    def accepted_workflows(self) -> tuple[str, ...]:
        """The configured workflows whose history the server answers (not rejected)."""
        return tuple(w for w in self.config.workflows if w not in self.config.rejected_workflows)

    def expected_media(self) -> list[ExpectedFile]:
        """Every URL of every task that is or will be finished with files (whatever its
        workflow, rejected ones included: see :meth:`expected_media_of`)."""
        return self._expected(self._tasks)

    def expected_media_of(self, workflows: Iterable[str]) -> list[ExpectedFile]:
        """:meth:`expected_media` restricted to tasks of these workflows, e.g.
        ``expected_media_of(sim.accepted_workflows)``: what a history walk can find."""
        wanted = set(workflows)
        return self._expected([t for t in self._tasks if t.workflow in wanted])

    def _expected(self, tasks: list[_Task]) -> list[ExpectedFile]:
        keep = timedelta(hours=self.config.retention_hours)
        return [
            expected_file(
                self.server.url(f.path),
                self._spec(f),
                role="result",
                generation_id=t.task_id,
                expires_at=t.ended_at + keep,
                source_field="outputs[].urls[]" + (" (relative)" if f.relative else ""),
            )
            for t in tasks
            for f in t.files()
        ]

    def _spec(self, f: _File) -> media.MediaSpec:
        return media.MediaSpec(f"crowdcomputed/{self.config.seed}{f.path}", f.size, f.kind)

    def callback_payload(self, task_id: str) -> dict[str, Any]:
        """The JSON CrowdComputed would POST to a ``callback`` URL for this task now."""
        return self._render(self._by_id[task_id])

    # ------------------------------------------------------------------ rendering

    def _phase(self, t: _Task) -> str:
        if not t.processing:
            return "failed" if t.outcome == "failed" else "finished"
        elapsed = self.clock.elapsed()
        wait = self.config.processing_seconds
        if elapsed < 0.4 * wait:
            return "waiting"
        if elapsed < wait:
            return "generating"
        return "failed" if t.outcome == "failed" else "finished"

    def _render(self, t: _Task) -> dict[str, Any]:
        phase = self._phase(t)
        return {
            "taskId": t.task_id,
            "status": phase,
            "outputs": [self._output(t, o, phase) for o in t.outputs],
        }

    def _output(self, t: _Task, o: _Output, phase: str) -> dict[str, Any]:
        done = phase in ("finished", "failed")
        urls = [
            f.relative_url if f.relative else self.server.url(f.path)
            for f in (o.files if phase == "finished" else ())
        ]
        return {
            "outputId": o.output_id,
            "status": phase,
            "reSchedule": o.reschedule and phase != "waiting",
            "urls": urls,
            "estimateMs": o.estimate_ms,
            "queueOrder": t.queue_order if phase == "waiting" else 0,
            "startTime": t.start_s if phase != "waiting" else 0,
            "endTime": t.end_s if done else 0,
        }

    # ------------------------------------------------------------------ routes

    def _fail(self, message: str) -> Response:
        """An error in the envelope, on the HTTP status the ``error_http_status`` knob says."""
        status = self.config.error_http_status
        if status is None:
            status = {"unauthorized": 401, "task not found": 404}.get(message, 400)
        return _error(status, "Failed", message)

    def _authorized(self, req: Request) -> bool:
        if req.headers.get("token") == self.api_key:
            return True
        return self.config.accept_authorization and req.headers.get("authorization") == self.api_key

    def _page_params(self, req: Request) -> tuple[int, int] | None:
        """``(page index, page size)`` from the accepted spelling(s); None if not integers.

        Counts the spelling(s) the request carried in :attr:`paging_seen`, accepted or not;
        a spelling the ``accept_paging`` knob excludes is ignored, as a server would.
        """
        present = [name for name, keys in _SPELLINGS.items() if any(k in req.query for k in keys)]
        with self._seen_lock:
            self.paging_seen["both" if len(present) > 1 else "".join(present) or "none"] += 1
        accept = self.config.accept_paging
        index, size = 1, self.config.default_page_size
        for name, (index_key, size_key) in _SPELLINGS.items():
            if accept not in ("both", name):
                continue
            raw_index = req.query.get(index_key, "").strip()
            raw_size = req.query.get(size_key, "").strip()
            try:
                index = int(raw_index) if raw_index else index
                size = int(raw_size) if raw_size else size
            except ValueError:
                return None
        return index, size

    def _history(self, req: Request) -> Response:
        if not self._authorized(req):
            return self._fail("unauthorized")
        workflow = req.query.get("workflow", "").strip()
        if not workflow:
            return self._fail("workflow is empty")
        if workflow not in KNOWN_WORKFLOWS or workflow in self.config.rejected_workflows:
            return self._fail("invalid params")
        paging = self._page_params(req)
        if paging is None or paging[0] < 1 or paging[1] < 1:
            return self._fail("invalid params")
        index, size = paging[0], min(paging[1], self.config.max_page_size)
        tasks = [t for t in self._tasks if t.workflow == workflow]
        start = (index - 1) * size
        data = {
            "total": len(tasks),
            "pageSize": size,
            "pageIndex": index,
            "pageData": [self._render(t) for t in tasks[start : start + size]],
        }
        return Response.json({"code": "Success", "message": "Success", "data": data})

    def _status(self, req: Request) -> Response:
        if not self._authorized(req):
            return self._fail("unauthorized")
        task_id = req.query.get("taskId", "").strip()
        if not task_id:
            return self._fail("invalid params")
        task = self._by_id.get(task_id)
        if task is None:
            return self._fail("task not found")
        return Response.json({"code": "Success", "message": "Success", "data": self._render(task)})


def create(
    *, api_key: str | None = None, seed: int = 0, count: int | None = None, **knobs: Any
) -> CrowdComputedSimulator:
    """Uniform factory used by the simulator registry; knobs are CrowdComputedSimConfig fields."""
    return CrowdComputedSimulator(
        config_from_knobs(
            CrowdComputedSimConfig, api_key=api_key, seed=seed, count=count, knobs=knobs
        )
    )


__all__ = ["API_PATH", "CrowdComputedSimConfig", "CrowdComputedSimulator", "create"]
