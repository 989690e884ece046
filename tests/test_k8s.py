"""The Kubernetes manifests in ``deploy/k8s/`` (and the KEDA ScaledObjects in ``deploy/k8s/keda/``).

No cluster is needed, and no network: every core object is validated against the Kubernetes JSON
schemas that the ``kubernetes-validate`` wheel ships (strict: an unknown or misspelled field is an
error), for the oldest and the newest Kubernetes version named below; every ScaledObject against
``tests/data/keda-scaledobject.schema.json`` (origin: ``tests/data/README.md``), and its HPA
behaviour against the Kubernetes ``HorizontalPodAutoscaler`` schema (KEDA builds one from it). The
manifests are plain files applied in name order, so loading every document *is* the rendering.

Then what an operator would trip over: every environment variable is a real setting, the values
parse, every Secret and ConfigMap reference resolves, the commands and probes are the ones the
compose file and the tests run, the grace periods outlast the longest task, and the autoscaler
reads metrics the API really exports, for the queues the workers really consume.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from api.metrics import REGISTRY
from api.routes.health import router as health_router
from api.security import parse_api_keys
from shared.manifests import scan_models
from shared.queues import Queue
from shared.settings import REPO_ROOT, Settings
from tests.test_containers import (
    EXERCISED_HERE,
    all_commands,
    compose,
    final_stage,
    modules_started_by_tests,
    python_modules,
)

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KEDA_DIR = K8S_DIR / "keda"
KEDA_SCHEMA = REPO_ROOT / "tests" / "data" / "keda-scaledobject.schema.json"
# The oldest Kubernetes the manifests promise to work on (policy/v1 PDBs, autoscaling/v2 behaviour,
# resourceFieldRef env) and the newest whose schemas the wheel ships.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
NAMESPACE = "mlqueue"
# Each workload and the docker-compose.yml service that runs the same thing.
COMPOSE_SERVICE = {
    "api": "api",
    "worker-cpu": "worker",
    "worker-gpu": "worker-gpu",
    "webhooks": "webhooks",
    "flower": "flower",
}
IMAGES = {"mlqueue/api:latest": "Dockerfile.api", "mlqueue/worker:latest": "Dockerfile.worker"}
IMAGES["mlqueue/worker-gpu:latest"] = "Dockerfile.worker"  # built with --build-arg TF_VARIANT=gpu
MODEL_WORKERS = ("worker-cpu", "worker-gpu")


# ---- loading (the rendering) ------------------------------------------------------------------


def load_documents(directory: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of every ``*.yaml`` in ``directory``, in apply (name) order."""
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append(doc)
    return docs


CORE = load_documents(K8S_DIR)
SCALED = load_documents(KEDA_DIR)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in CORE + SCALED if d["kind"] == kind}


def workloads() -> dict[str, dict[str, Any]]:
    return objects("Deployment") | objects("StatefulSet")


def mlqueue_containers() -> dict[str, dict[str, Any]]:
    """The containers that run mlqueue's own images, by workload name."""
    found = {}
    for name, workload in workloads().items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            if container["image"].startswith("mlqueue/"):
                found[name] = container
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """What a container's environment is made of: literal values, and references as ``("secret",
    name, key)``, ``("field", ...)``; the ConfigMap it loads whole is merged in first."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env |= objects("ConfigMap")[source["configMapRef"]["name"]]["data"]
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = ("secret", ref["name"], ref["key"])
        else:
            env[var["name"]] = ("field", var["valueFrom"])
    return env


def secret_value(name: str, key: str) -> str:
    return objects("Secret")[name]["stringData"][key]


def worker_queue(workload: str) -> str:
    return env_of(mlqueue_containers()[workload])["MLQUEUE_WORKER_QUEUES"]


def settings_of(workload: str) -> Settings:
    """The Settings a container would start with, secrets taken from their placeholders."""
    values = {}
    for var, value in env_of(mlqueue_containers()[workload]).items():
        if isinstance(value, tuple) and value[0] == "secret":
            value = secret_value(value[1], value[2])
        elif isinstance(value, tuple):
            value = "2"  # a resourceFieldRef: a CPU count
        values[var.removeprefix("MLQUEUE_").lower()] = value
    return Settings(**values)


# ---- schemas -----------------------------------------------------------------------------------


def test_the_manifests_are_there_and_each_object_once():
    kinds = sorted(d["kind"] for d in CORE)
    assert kinds.count("Namespace") == 1 and CORE[0]["kind"] == "Namespace", "the namespace must be applied first"
    assert set(workloads()) == {"redis", *COMPOSE_SERVICE}
    assert set(objects("ScaledObject")) == {"worker-cpu", "worker-gpu", "webhooks"}
    keys = [(d["kind"], d["metadata"]["name"]) for d in CORE + SCALED]
    assert len(keys) == len(set(keys)), "an object defined twice: the second apply wins silently"
    for doc in CORE[1:] + SCALED:
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
    assert all(d["kind"] == "ScaledObject" for d in SCALED), (
        "KEDA objects only in keda/ (applied when KEDA is installed)"
    )


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", CORE, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_object_is_valid_kubernetes(doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_catches_a_misspelled_field():
    """The schemas are strict: a probe field typed wrong is refused, not silently pruned."""
    bad = copy.deepcopy(objects("Deployment")["api"])
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def keda_validator() -> jsonschema.Draft202012Validator:
    schema = yaml.safe_load(KEDA_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", ["worker-cpu", "worker-gpu", "webhooks"])
def test_every_scaled_object_is_valid_keda(name):
    scaled = objects("ScaledObject")[name]
    errors = sorted(keda_validator().iter_errors(scaled), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    behavior = scaled["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
    if behavior is not None:  # KEDA copies it into the HPA it creates
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, "maxReplicas": 1},
        }
        hpa["spec"]["behavior"] = behavior
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(hpa, version, strict=True)


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("spec", "minReplicas"), 0, "minReplicas"),  # the HPA's name, not KEDA's minReplicaCount
        (("spec", "triggers", 0, "metadata", "threshold"), "32 jobs", "does not match"),
        (("spec", "triggers", 0, "metadata", "serverAdress"), "http://p:9090", "serverAdress"),
        (("spec", "triggers", 0, "metricType"), "Average", "is not one of"),
        (("spec", "scaleTargetRef", "name"), "Worker_CPU", "does not match"),
    ],
)
def test_keda_schema_refuses_what_keda_would_ignore_or_reject(path, value, complaint):
    bad = copy.deepcopy(objects("ScaledObject")["worker-cpu"])
    node = bad
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    messages = [e.message for e in keda_validator().iter_errors(bad)]
    assert any(complaint in m for m in messages), messages
    del bad["spec"]["triggers"][0]["metadata"]["query"]
    assert any("'query' is a required property" in e.message for e in keda_validator().iter_errors(bad))


# ---- settings, secrets, references ----------------------------------------------------------------


def test_every_environment_variable_is_a_real_setting():
    settings = {f"MLQUEUE_{field.upper()}" for field in Settings.model_fields}
    configmap = objects("ConfigMap")["mlqueue-config"]["data"]
    assert set(configmap) <= settings, f"not settings: {set(configmap) - settings}"
    for name, container in mlqueue_containers().items():
        names = [v["name"] for v in container.get("env", [])]
        assert len(names) == len(set(names)), f"{name}: a variable set twice"
        unknown = set(names) - settings
        assert not unknown, f"{name}: {unknown} are no settings of shared/settings.py (pydantic ignores them)"


@pytest.mark.parametrize("workload", sorted(COMPOSE_SERVICE))
def test_each_container_starts_with_valid_settings(workload):
    """The ConfigMap, the per-container values and the Secret placeholders all pass Settings' checks."""
    settings = settings_of(workload)
    assert settings.log_format == "json"
    assert settings.redis_url == secret_value("mlqueue-redis", "url")
    if workload != "api":
        assert settings.worker_queues in {q.value for q in Queue}


def test_every_reference_resolves():
    for name, workload in workloads().items():
        spec = workload["spec"]
        pod = spec["template"]["spec"]
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items(), name
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in objects("ConfigMap"), name
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in objects("Secret")[ref["name"]]["stringData"], f"{name}: {ref}"
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                http = container.get(probe, {}).get("httpGet")
                if http:
                    assert http["port"] in ports, f"{name} {probe}: no port named {http['port']}"
    for name, service in objects("Service").items():
        matched = [w for w in workloads().values() if service["spec"]["selector"].items() <= pod_labels(w).items()]
        assert len(matched) == 1, f"Service {name} selects {len(matched)} workloads"
        ports = {p["name"] for c in matched[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def test_secrets_are_placeholders_that_agree():
    for secret in objects("Secret").values():
        assert "data" not in secret, "placeholders as stringData, readable"
        for key, value in secret["stringData"].items():
            if key != "MLQUEUE_WEBHOOK_SECRET":
                assert "change-me" in value, f"{secret['metadata']['name']}/{key}: not a placeholder"
    # The Redis StatefulSet's password and the one in every client's URL are the same placeholder.
    password = secret_value("mlqueue-redis", "password")
    assert secret_value("mlqueue-redis", "url") == f"redis://:{password}@redis.{NAMESPACE}.svc:6379/0"
    assert re.fullmatch(r"[A-Za-z0-9-]+", password), "URL-safe, as .env.example asks"
    parse_api_keys(secret_value("mlqueue-api-keys", "MLQUEUE_API_KEYS"))  # the format the API requires
    webhook = secret_value("mlqueue-webhook", "MLQUEUE_WEBHOOK_SECRET")
    assert webhook.startswith("whsec_") and b"change-me" in base64.b64decode(webhook.removeprefix("whsec_"))
    # Least privilege: a secret goes only where it is used.
    holders = {
        key: {n for n, c in mlqueue_containers().items() if key in env_of(c)}
        for key in ("MLQUEUE_API_KEYS", "MLQUEUE_WEBHOOK_SECRET", "MLQUEUE_FLOWER_BASIC_AUTH")
    }
    assert holders == {
        "MLQUEUE_API_KEYS": {"api"},
        "MLQUEUE_WEBHOOK_SECRET": {"api", "webhooks"},  # the API refuses webhooks without it; the sender signs
        "MLQUEUE_FLOWER_BASIC_AUTH": {"flower"},
    }


# ---- the same commands, images and users as compose and the Dockerfiles ------------------------


def test_containers_run_what_compose_runs():
    services = compose()["services"]
    for workload, container in mlqueue_containers().items():
        service = services[COMPOSE_SERVICE[workload]]
        assert container["command"] == service["command"], workload
        queues = service["environment"].get("MLQUEUE_WORKER_QUEUES")
        if queues:
            assert worker_queue(workload) == queues, workload
        assert IMAGES[container["image"]] == service["build"]["dockerfile"], workload
    started = modules_started_by_tests() | EXERCISED_HERE  # what the suite runs for real
    for workload, container in mlqueue_containers().items():
        probes = [
            container[p]["exec"]["command"] for p in ("startupProbe", "livenessProbe") if "exec" in container.get(p, {})
        ]
        for argv in (container["command"], *probes):
            assert set(python_modules(argv)) <= started, f"{workload}: {argv} runs a module no test starts"
    assert mlqueue_containers()["worker-gpu"]["image"] == "mlqueue/worker-gpu:latest"
    assert services["worker-gpu"]["build"]["args"]["TF_VARIANT"] == "gpu"


def test_probes_are_the_images_own_health_checks():
    commands = all_commands()
    worker_check = commands["Dockerfile.worker HEALTHCHECK"]
    for workload in ("worker-cpu", "worker-gpu", "webhooks"):
        container = mlqueue_containers()[workload]
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["exec"]["command"] == worker_check, f"{workload} {probe}"
        # the image's start period (model load + warm-up) fits in the start-up probe's budget
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 180, workload
    routes = {route.path for route in health_router.routes}
    api = mlqueue_containers()["api"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert api["ports"][0]["containerPort"] == settings_of("api").api_port
    flower = compose()["services"]["flower"]
    assert "/healthcheck" in " ".join(flower["healthcheck"]["test"])
    assert mlqueue_containers()["flower"]["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert mlqueue_containers()["flower"]["ports"][0]["containerPort"] == settings_of("flower").flower_port


def dockerfile_uid(dockerfile: str) -> int:
    users = [args for kw, args in final_stage(dockerfile) if kw == "USER"]
    return int(users[-1].split(":")[0])


def test_pods_run_as_the_images_non_root_user():
    for name, workload in workloads().items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, name
            if container["image"].startswith("mlqueue/"):
                assert pod["securityContext"]["runAsUser"] == dockerfile_uid(IMAGES[container["image"]]), name
    assert workloads()["redis"]["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 999  # image's redis


def test_redis_runs_as_compose_runs_it():
    service = compose()["services"]["redis"]
    [container] = workloads()["redis"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == service["image"]
    options = dict(zip(container["command"][1::2], container["command"][2::2], strict=True))
    assert options == {
        "--appendonly": "yes",
        "--appendfsync": "everysec",
        "--maxmemory": options["--maxmemory"],
        "--maxmemory-policy": "noeviction",
        "--requirepass": "$(REDIS_PASSWORD)",  # expanded by Kubernetes from the env below
    }
    env = {v["name"]: v["valueFrom"]["secretKeyRef"] for v in container["env"]}
    assert env == {k: {"name": "mlqueue-redis", "key": "password"} for k in ("REDIS_PASSWORD", "REDISCLI_AUTH")}
    assert workloads()["redis"]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


# ---- shutdown, disruption, GPUs ---------------------------------------------------------------------


def grace_s(workload: str) -> int:
    return workloads()[workload]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_grace_periods_outlast_the_longest_task():
    for workload in MODEL_WORKERS:
        settings = settings_of(workload)
        assert grace_s(workload) > settings.task_time_limit_s, workload
        assert grace_s(workload) > Settings().task_time_limit_s, workload  # also with the default
    webhooks = settings_of("webhooks")
    assert grace_s("webhooks") > webhooks.webhook_timeout_s + 20  # worker/webhook_tasks.py's time limit
    assert grace_s("api") > settings_of("api").max_wait_s  # a Prefer: wait long poll gets to answer
    compose_grace = compose()["services"]["worker"]["stop_grace_period"]
    assert grace_s("worker-cpu") >= int(compose_grace.removesuffix("s"))


def test_every_scalable_workload_has_a_disruption_budget():
    budgets = objects("PodDisruptionBudget")
    assert set(budgets) == {"api", "worker-cpu", "worker-gpu", "webhooks"}
    for name, budget in budgets.items():
        assert budget["spec"]["selector"]["matchLabels"] == workloads()[name]["spec"]["selector"]["matchLabels"]
    assert budgets["api"]["spec"]["minAvailable"] == 1 and objects("Deployment")["api"]["spec"]["replicas"] >= 2


def test_gpu_workers_ask_for_one_gpu_and_start_at_zero():
    gpu = objects("Deployment")["worker-gpu"]
    assert gpu["spec"]["replicas"] == 0
    [container] = gpu["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1  # one worker process per GPU
    for name in ("worker-cpu", "webhooks", "api", "flower"):
        for c in workloads()[name]["spec"]["template"]["spec"]["containers"]:
            assert "nvidia.com/gpu" not in c.get("resources", {}).get("limits", {}), name


def test_worker_threads_follow_the_pods_cpu_request():
    for workload in MODEL_WORKERS:
        container = mlqueue_containers()[workload]
        ref = next(v for v in container["env"] if v["name"] == "MLQUEUE_WORKER_THREADS")["valueFrom"]
        assert ref["resourceFieldRef"]["resource"] == "requests.cpu"
        assert "cpu" in container["resources"]["requests"]


# ---- autoscaling ---------------------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Every series name the API's registry can expose (a counter ``x`` is exposed as ``x_total``)."""
    names = set()
    for metric in REGISTRY.collect():
        names.add(f"{metric.name}_total" if metric.type == "counter" else metric.name)
    return names


def queries(scaled: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"}


def gpu_models() -> set[str]:
    models, _ = scan_models(REPO_ROOT / "models")
    return {name for name, versions in models.items() if any(m.queue == Queue.GPU for m in versions.values())}


def test_autoscalers_read_metrics_the_api_exports():
    exported = exported_metric_names()
    assert {"mlqueue_queue_depth", "mlqueue_queue_oldest_age_seconds"} <= exported
    for name, scaled in objects("ScaledObject").items():
        for trigger, query in queries(scaled).items():
            for metric in re.findall(r"\bmlqueue_\w+", query):
                assert metric in exported, f"{name}/{trigger}: {metric} is not exported by api/metrics.py"


@pytest.mark.parametrize("workload", ["worker-cpu", "worker-gpu", "webhooks"])
def test_each_worker_scales_on_its_own_queue(workload):
    scaled = objects("ScaledObject")[workload]
    assert scaled["spec"]["scaleTargetRef"]["name"] == workload and workload in objects("Deployment")
    queue = worker_queue(workload)
    found = queries(scaled)
    assert found["depth"] == f'max(mlqueue_queue_depth{{queue="{queue}"}})'
    assert found["oldest-age"] == f'max(mlqueue_queue_oldest_age_seconds{{queue="{queue}"}})'
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    assert triggers["depth"]["metricType"] == "AverageValue"  # waiting messages per replica
    assert triggers["oldest-age"]["metricType"] == "Value"  # a latency bound, whatever the replica count
    spec = scaled["spec"]
    assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
    expected_min = 0 if workload == "worker-gpu" else 1  # cpu runs the sweeper, webhooks the retry scheduler
    assert spec["minReplicaCount"] == expected_min
    if workload != "worker-gpu":
        assert objects("Deployment")[workload]["spec"]["replicas"] >= expected_min


def test_gpu_workers_wake_on_demand_for_the_gpu_models():
    """While no GPU worker is live the API routes gpu models to the cpu queue, so the gpu queue's own
    gauges stay at 0: the demand trigger must name exactly the models that prefer a GPU."""
    demand = queries(objects("ScaledObject")["worker-gpu"])["demand"]
    match = re.fullmatch(r'sum\(rate\(mlqueue_jobs_created_total\{model=~"([\w|]+)"\}\[\d+m\]\)\)', demand)
    assert match, demand
    assert set(match.group(1).split("|")) == gpu_models() != set()
    demand_trigger = next(t for t in objects("ScaledObject")["worker-gpu"]["spec"]["triggers"] if t["name"] == "demand")
    assert float(demand_trigger["metadata"]["activationThreshold"]) == 0  # any demand wakes the first worker
