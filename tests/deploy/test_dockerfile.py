"""deploy/Dockerfile: its structure, since no Docker engine runs in the tests.

What is checked is what a reviewer would check and what the other artifacts rely on:
two stages on a slim Python, the venv copied from the build stage, a fixed non-root
UID that the Kubernetes manifests run as, ``genvault`` as the entrypoint with ``run``
as the default command, and a .dockerignore that lets in exactly what the build
copies. Whether the image builds and runs is not proven here: that needs an engine.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _arg_default(name: str) -> str:
    for word, args in _instructions():
        if word == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}")


def test_multi_stage_on_slim_python() -> None:
    stages = _stages()
    assert len(stages) >= 2
    names = [re.split(r"\s+as\s+", s[0][1], flags=re.I) for s in stages]
    assert all(len(n) == 2 for n in names), "name every stage (FROM … AS name)"
    bases = {n[0].replace("${PYTHON_IMAGE}", _arg_default("PYTHON_IMAGE")) for n in names}
    assert all(re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", b) for b in bases), bases
    runtime = stages[-1]
    build_stage = names[0][1]
    assert any(w == "COPY" and a.startswith(f"--from={build_stage} ") for w, a in runtime)
    assert not any(w == "RUN" and "pip install" in a for w, a in runtime), "build in stage 1"


def test_runs_as_the_non_root_uid_kubernetes_expects() -> None:
    users = [a for w, a in _stages()[-1] if w == "USER"]
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root UID (runAsNonRoot checks it)"
    assert gid.isdigit() and int(gid) != 0
    for name in ("deployment.yaml", "cronjob.yaml"):
        text = (ROOT / "deploy" / "kubernetes" / name).read_text()
        assert f"runAsUser: {uid}" in text, name


def test_entrypoint_is_genvault_and_the_default_is_the_daemon() -> None:
    final = dict(_stages()[-1])  # the last of each instruction wins, as in Docker
    assert json.loads(final["ENTRYPOINT"]) == ["genvault"]
    assert json.loads(final["CMD"]) == ["run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "genvault" in scripts
    assert final["STOPSIGNAL"] == "SIGTERM"
    configmap = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "configmap.yaml").read_text())
    listen = tomllib.loads(configmap["data"]["genvault.toml"])["server"]["listen"]
    assert listen.rsplit(":", 1)[1] == final["EXPOSE"]


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "an allow-list: nothing enters the context unless named"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied: set[str] = set()
    for word, args in _stages()[0]:
        if word == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            copied.update(s.rstrip("/") for s in sources)
    assert copied == allowed
    for src in copied:
        assert (ROOT / src).exists(), src
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in copied, "pyproject.toml's readme must be in the context to build"
