"""deploy/kubernetes/ (issue 25), rendered as kustomize would (its resources, the generated ConfigMap, the
image tag, the common labels) and checked against the API's own schemas (kubernetes-validate ships them:
no cluster, no network) and against the config it mounts: ports, probes, env names, the Redis URL, the
drain, a non-root user and a read-only root filesystem; the Secret referenced, never inlined."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from llm_sse_proxy.proxy.config import Config, parse_config
from llm_sse_proxy.proxy.doors.response import FAREWELL_SECONDS

DIR = Path(__file__).parent.parent / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes still supported when this was written: what the manifests must fit
UVICORN_EXTRA = 2  # proxy/server/serve.py: uvicorn waits shutdown_grace + 2 s for the last writes


def render() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/kubernetes` would create (kustomize's name hashes left out)."""
    kustomization = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    objects = [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((DIR / name).read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(f).name: (DIR / f).read_text() for f in generator["files"]}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    tags = {image["name"]: image["newTag"] for image in kustomization.get("images", [])}
    labels = {k: v for entry in kustomization.get("labels", []) for k, v in entry["pairs"].items()}
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(labels)
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            if container["image"] in tags:
                container["image"] = f"{container['image']}:{tags[container['image']]}"
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


OBJECTS = render()
DEPLOYMENT = find(OBJECTS, "Deployment", "llm-sse-proxy")
POD = DEPLOYMENT["spec"]["template"]["spec"]
[PROXY] = POD["containers"]


def mounted_config() -> tuple[Config, dict[str, str]]:
    """The config the Deployment mounts, loaded with exactly the environment it gives the container."""
    [mount] = [m for m in PROXY["volumeMounts"] if m["name"] == "config"]
    [volume] = [v for v in POD["volumes"] if v["name"] == "config"]
    configmap = find(OBJECTS, "ConfigMap", volume["configMap"]["name"])
    path = PROXY["args"][PROXY["args"].index("--config") + 1]
    assert path.startswith(mount["mountPath"] + "/")
    text = configmap["data"][path.removeprefix(mount["mountPath"] + "/")]
    environ = {e["name"]: e.get("value", f"from-the-secret-{e['name'].lower()}-0123456789abcdef0123456789")
               for e in PROXY["env"]}
    return parse_config(yaml.safe_load(text), where="deploy/kubernetes/config.yaml", environ=environ), environ


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_each_object_is_valid_for_the_kubernetes_api(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)  # raises, naming the field, when it is not


def test_the_kustomization_has_what_a_deployment_needs() -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in OBJECTS}
    assert {("Deployment", "llm-sse-proxy"), ("Service", "llm-sse-proxy"), ("PodDisruptionBudget", "llm-sse-proxy"),
            ("Deployment", "llm-sse-proxy-redis"), ("Service", "llm-sse-proxy-redis")} <= kinds
    assert DEPLOYMENT["spec"]["replicas"] >= 2
    pdb = find(OBJECTS, "PodDisruptionBudget", "llm-sse-proxy")["spec"]
    assert pdb["minAvailable"] < DEPLOYMENT["spec"]["replicas"]  # a drain can go on, one Pod at a time
    pod_labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    for selector in (pdb["selector"]["matchLabels"], find(OBJECTS, "Service", "llm-sse-proxy")["spec"]["selector"]):
        assert selector.items() <= pod_labels.items()


def test_ports_and_probes_fit_the_config_it_mounts() -> None:
    config, _ = mounted_config()
    ports = {p["name"]: p["containerPort"] for p in PROXY["ports"]}
    assert ports["http"] == config.server.port == int(PROXY["args"][PROXY["args"].index("--port") + 1])
    assert config.server.host == PROXY["args"][PROXY["args"].index("--host") + 1] == "0.0.0.0"
    assert PROXY["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert PROXY["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert PROXY["readinessProbe"]["timeoutSeconds"] > 3  # /readyz bounds its checks at 3 s (readiness.py)
    service = find(OBJECTS, "Service", "llm-sse-proxy")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_the_drain_fits_the_termination_grace_period() -> None:
    config, _ = mounted_config()
    pre_stop = PROXY["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = float(pre_stop[1]) + config.server.drain_delay + config.server.shutdown_grace + UVICORN_EXTRA
    assert POD["terminationGracePeriodSeconds"] >= needed + FAREWELL_SECONDS


def test_env_names_and_the_redis_url_match_the_config_and_the_redis_service() -> None:
    config, environ = mounted_config()  # parse_config fails, naming it, on any ${VAR} the env does not set
    assert config.resume.store == "redis" and config.auth.key_hashes and config.auth.token_secret is not None
    url = urlsplit(environ["REDIS_URL"])
    redis_service = find(OBJECTS, "Service", urlsplit(environ["REDIS_URL"]).hostname)
    [port] = redis_service["spec"]["ports"]
    assert url.port == port["port"]
    redis = find(OBJECTS, "Deployment", redis_service["metadata"]["name"])["spec"]["template"]["spec"]
    assert {p["name"]: p["containerPort"] for p in redis["containers"][0]["ports"]}[port["targetPort"]] == 6379


def test_secrets_are_referenced_never_inlined() -> None:
    assert not [o for o in OBJECTS if o["kind"] == "Secret"]
    by_name = {e["name"]: e for e in PROXY["env"]}
    for name in ("PROXY_KEYS", "PROXY_TOKEN_SECRET", "OPENAI_API_KEY"):
        assert "value" not in by_name[name]
        assert by_name[name]["valueFrom"]["secretKeyRef"] == {"name": "llm-sse-proxy", "key": name,
                                                              **({"optional": True} if name == "OPENAI_API_KEY" else {})}


@pytest.mark.parametrize("name", ["llm-sse-proxy", "llm-sse-proxy-redis"])
def test_non_root_with_a_read_only_root_filesystem(name: str) -> None:
    pod = find(OBJECTS, "Deployment", name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def test_the_image_runs_as_the_user_the_pod_names() -> None:
    dockerfile = (Path(__file__).parent.parent / "Dockerfile").read_text()
    assert f"--uid {POD['securityContext']['runAsUser']} proxy" in dockerfile
