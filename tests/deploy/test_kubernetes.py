"""deploy/kubernetes/: every manifest against the Kubernetes OpenAPI schemas, offline.

``kubernetes-validate`` bundles the JSON schemas of each Kubernetes release, so no
cluster and no network are needed. Strict mode: an unknown or misspelt field (which
``kubectl apply`` would drop with a mere warning) fails. Manifests are checked
against the oldest release they claim to support and the newest the validator knows.

Beyond the schemas: the policies the deployment relies on (no overlapping passes,
non-root, read-only root filesystem, probes on the daemon's real endpoints, resource
limits), and the ConfigMap's TOML loaded by genvault's own config loader with the
environment the pods get, so a config the daemon would reject with exit 2 fails here.

No pure-Python kustomize exists, so the kustomization is checked for what ``kubectl
apply -k`` would trip on: every listed file exists, every manifest is listed (the
example Secret on purpose is not), and the image it rewrites is the one the pods use.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

from genvault.config import load_settings, resolve_secrets, resolve_server_token, split_listen

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
OLDEST_SUPPORTED = "1.29"  # podFailurePolicy: the 1.26-1.28 schemas require onPodConditions


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


MANIFEST_FILES = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
MANIFESTS = {p.name: _docs(p) for p in MANIFEST_FILES}
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _one(kind: str) -> dict[str, Any]:
    found = [d for docs in MANIFESTS.values() for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)} manifests"
    return found[0]


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        spec: dict[str, Any] = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = workload["spec"]["template"]["spec"]
    return spec


def _workloads() -> Iterator[dict[str, Any]]:
    yield _one("Deployment")
    yield _one("CronJob")


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, kv.latest_version()])
@pytest.mark.parametrize("name", [p.name for p in MANIFEST_FILES])
def test_manifest_matches_the_kubernetes_schema(name: str, version: str) -> None:
    assert MANIFESTS[name], f"{name} is empty"
    for doc in MANIFESTS[name]:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{name}: {doc['kind']} at {where or '(top)'}: {exc.message}")


def test_the_validator_rejects_a_misspelt_field() -> None:
    """Strict mode is what catches typos; prove it is on."""
    bad = yaml.safe_load((K8S / "cronjob.yaml").read_text())
    bad["spec"]["concurencyPolicy"] = bad["spec"].pop("concurrencyPolicy")
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)


def test_kustomization_lists_exactly_the_manifests() -> None:
    listed = list(KUSTOMIZATION["resources"])
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists missing {name}"
    expected = {p.name for p in MANIFEST_FILES if not p.name.endswith(".example.yaml")}
    assert set(listed) == expected
    assert "secret.example.yaml" not in listed  # apply -k must never overwrite real keys


def test_kustomization_image_is_the_one_the_pods_use() -> None:
    names = {img["name"] for img in KUSTOMIZATION["images"]}
    for w in _workloads():
        for c in _pod_spec(w)["containers"]:
            assert c["image"] in names, f"{w['kind']}: {c['image']} is not rewritten"


def test_cronjob_never_overlaps_and_gives_up() -> None:
    cj = _one("CronJob")["spec"]
    assert cj["concurrencyPolicy"] == "Forbid"
    assert cj["startingDeadlineSeconds"] > 0
    job = cj["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 0
    assert job["activeDeadlineSeconds"] > 0
    codes = job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
    assert set(codes) == {2, 4}  # bad config, lost files: a retry cannot help
    container = _pod_spec(_one("CronJob"))["containers"][0]
    assert container["args"] == ["run", "--once"]
    assert "command" not in container  # the image's ENTRYPOINT is genvault


def test_deployment_runs_three_daemons_on_postgresql() -> None:
    dep = _one("Deployment")
    assert dep["spec"]["replicas"] == 3
    container = _pod_spec(dep)["containers"][0]
    assert container["args"] == ["run"]
    assert "command" not in container
    secret = _one("Secret")["stringData"]
    assert secret["GENVAULT_DATABASE__URL"].startswith("postgresql")  # SQLite is one process


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_pods_are_non_root_read_only_and_bounded(kind: str) -> None:
    pod = _pod_spec(_one(kind))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][bound]), (kind, bound)
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts  # the only writable path on a read-only root


def test_probes_hit_the_daemons_endpoints_on_its_port() -> None:
    dep = _one("Deployment")
    container = _pod_spec(dep)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    toml = tomllib.loads(_one("ConfigMap")["data"]["genvault.toml"])
    host, port = split_listen(toml["server"]["listen"])
    assert host == "0.0.0.0", "the kubelet probes the pod IP, not loopback"
    assert port == ports["http"]
    service = _one("Service")["spec"]
    assert service["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    pdb = _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_grace_period_covers_the_shutdown_grace() -> None:
    toml = tomllib.loads(_one("ConfigMap")["data"]["genvault.toml"])
    grace = toml["schedule"]["shutdown_grace_seconds"]
    for w in _workloads():
        assert _pod_spec(w)["terminationGracePeriodSeconds"] > grace


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_configmap_is_a_config_genvault_accepts_in_that_pod(kind: str, tmp_path: Path) -> None:
    """Mount the ConfigMap where the pod does, give it the pod's environment, load it."""
    pod = _pod_spec(_one(kind))
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    (source,) = container["envFrom"]
    secret = _one("Secret")
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    env.update(secret["stringData"])

    config_path = Path(env.pop("GENVAULT_CONFIG"))
    mount = next(m for m in container["volumeMounts"] if config_path.is_relative_to(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = _one("ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    key = str(config_path.relative_to(mount["mountPath"]))
    local = tmp_path / key
    local.write_text(configmap["data"][key])

    settings = load_settings(local, environ=env)
    assert settings.database.url.startswith("postgresql+psycopg://")
    assert settings.storage.url.startswith("s3://")
    assert settings.accounts, "no account configured"
    assert set(resolve_secrets(settings, environ=env)) == {a.name for a in settings.accounts}
    assert resolve_server_token(settings, environ=env) is not None
