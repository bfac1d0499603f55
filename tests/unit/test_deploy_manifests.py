"""The deployment files agree with the code: settings, metric names, the port, the user, shutdown timing.

Schemas, rendering and the alert rules themselves are checked by .ci/validate-deploy.sh (kubeconform,
kustomize, promtool); these tests read the source files and need nothing but PyYAML.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream_worker.metrics import CallOutcome, CheckpointOutcome, WorkerMetrics
from stream_worker.settings import ENV_PREFIX, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "k8s" / "base"
DEV = DEPLOY / "k8s" / "overlays" / "dev"
#: Served by `stream-worker run` itself, not by the shard children's WorkerMetrics.
SUPERVISOR_METRICS = {"stream_worker_daemon_up"}
METRICS_PORT = 9102
UID = 10001


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(doc, dict)]


def one(path: Path) -> dict[str, Any]:
    (document,) = documents(path)
    return document


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    (main,) = containers
    return main


def env_of(main: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in main["env"] if "value" in item}


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def base_config() -> dict[str, str]:
    (generator,) = one(BASE / "kustomization.yaml")["configMapGenerator"]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def dev_config() -> dict[str, str]:
    return {**base_config(), **env_file(DEV / "local-stack.env")}


def exported_metric_names() -> set[str]:
    """The sample names the worker exposes, as Prometheus sees them."""
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    names = set(SUPERVISOR_METRICS)
    for family in registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def alert_rules() -> list[dict[str, Any]]:
    rule = one(BASE / "prometheusrule.yaml")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def load_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validate_deploy", DEPLOY / "tools" / "validate_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [base_config, dev_config], ids=["base", "dev"])
def test_every_worker_setting_in_the_manifests_exists_and_is_valid(config: Any) -> None:
    deployment_env = env_of(container(one(BASE / "deployment.yaml")))
    settings = {**config(), **deployment_env}
    fields = {}
    for key, value in settings.items():
        if key.startswith(ENV_PREFIX):
            name = key.removeprefix(ENV_PREFIX).lower()
            assert name in WorkerSettings.model_fields, f"{key} is not a worker setting (a typo is ignored silently)"
            fields[name] = value
    assert {"stream_name", "application_name", "dead_letter_url", "tracking_id", "metrics_port"} <= set(fields)
    WorkerSettings(**fields)  # raises on a value the worker would refuse at start


def test_the_dev_overlay_points_every_aws_client_at_the_local_stack() -> None:
    config = dev_config()
    assert config["STREAM_WORKER_TRACKING_ID"], "the dev overlay must name the local tracker"
    assert config["AWS_ENDPOINT_URL"].startswith("http://")
    for key in ("STREAM_WORKER_KCL_KINESIS_ENDPOINT", "STREAM_WORKER_KCL_DYNAMODB_ENDPOINT"):
        assert config[key].startswith("http://")
    credentials = env_file(DEV / "local-stack-credentials.env")
    assert set(credentials) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_base_leaves_the_tracking_id_to_the_overlays() -> None:
    # An empty tracker id fails at start with a message naming STREAM_WORKER_TRACKING_ID.
    assert base_config()["STREAM_WORKER_TRACKING_ID"] == ""


# -- metrics and alerts ------------------------------------------------------------------------------


def test_alert_rules_use_only_metrics_the_worker_exports() -> None:
    exported = exported_metric_names()
    used = {name for rule in alert_rules() for name in re.findall(r"\bstream_worker_[a-z_]+", rule["expr"])}
    assert used, "no stream_worker_ metric in the alert rules?"
    assert used <= exported, f"unknown metrics in the alert rules: {sorted(used - exported)}"


def test_alert_rules_use_only_outcomes_the_worker_reports() -> None:
    known = set(get_args(CallOutcome)) | set(get_args(CheckpointOutcome))
    for rule in alert_rules():
        for values in re.findall(r'outcome=~?"([^"]+)"', rule["expr"]):
            assert set(values.split("|")) <= known, f"{rule['alert']}: unknown outcome in {values!r}"


def test_every_alert_has_a_severity_summary_and_description() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_metrics_port_agrees_everywhere() -> None:
    assert WorkerSettings.model_fields["metrics_port"].default == METRICS_PORT
    main = container(one(BASE / "deployment.yaml"))
    assert main["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    assert env_of(main)["STREAM_WORKER_METRICS_PORT"] == str(METRICS_PORT)
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert main[probe]["httpGet"] == {"path": path, "port": "metrics"}
    service = one(BASE / "service.yaml")
    assert service["spec"]["ports"][0]["port"] == METRICS_PORT
    assert service["spec"]["ports"][0]["name"] == "metrics"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
    assert service["spec"]["publishNotReadyAddresses"] is True
    monitor = one(BASE / "servicemonitor.yaml")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert f"EXPOSE {METRICS_PORT}" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


# -- the pod -------------------------------------------------------------------------------------------


def test_the_pod_runs_as_the_image_user_with_a_read_only_root() -> None:
    deployment = one(BASE / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    main = container(deployment)
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert f"USER {UID}:{UID}" in dockerfile
    assert f"--uid {UID}" in dockerfile


def test_everything_the_worker_writes_goes_to_the_tmp_empty_dir() -> None:
    deployment = one(BASE / "deployment.yaml")
    main = container(deployment)
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = env_of(main)
    assert env["TMPDIR"] == "/tmp"  # the supervisor's run folder (properties file, logback.xml)
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")


def test_termination_grace_outlasts_the_kcl_graceful_shutdown() -> None:
    deployment = one(BASE / "deployment.yaml")
    env = env_of(container(deployment))
    fields = WorkerSettings.model_fields
    kcl_grace_ms = int(env.get("STREAM_WORKER_SHUTDOWN_GRACE_MILLIS", fields["shutdown_grace_millis"].default))
    drain_s = float(env.get("STREAM_WORKER_SHUTDOWN_GRACE_SECONDS", fields["shutdown_grace_seconds"].default))
    assert drain_s * 1000 < kcl_grace_ms, "a shard's drain must fit in KCL's graceful shutdown"
    # The supervisor kills the daemon 10 s after the KCL grace, then gives leftovers 5 s: keep room beyond.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= kcl_grace_ms / 1000 + 20


def test_worker_id_is_the_pod_name() -> None:
    main = container(one(BASE / "deployment.yaml"))
    (pod_name,) = [item for item in main["env"] if item["name"] == "POD_NAME"]
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_replicas_and_disruption_budget() -> None:
    assert one(BASE / "deployment.yaml")["spec"]["replicas"] == 2
    budget = one(BASE / "poddisruptionbudget.yaml")
    assert budget["spec"]["maxUnavailable"] == 1
    deployment = one(BASE / "deployment.yaml")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    patch = one(DEV / "deployment-patch.yaml")
    assert patch["spec"]["replicas"] == 1


def test_the_service_account_is_annotated_for_irsa_and_the_dev_overlay_sets_the_role() -> None:
    account = one(BASE / "serviceaccount.yaml")
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]
    kustomization = one(DEV / "kustomization.yaml")
    patched = [p["patch"] for p in kustomization["patches"] if p.get("target", {}).get("kind") == "ServiceAccount"]
    assert any("eks.amazonaws.com~1role-arn" in patch for patch in patched)


# -- image -------------------------------------------------------------------------------------------


def test_the_image_runs_the_supervisor_on_python_311_and_java_17_without_compilers() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["stream-worker", "run"]' in dockerfile
    assert "python:3.11-slim" in dockerfile
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert "openjdk-17-jre-headless" in runtime
    for compiler in ("build-essential", "gcc", "openjdk-17-jdk"):
        assert compiler not in runtime
    assert "--no-index" in runtime, "the runtime stage installs the build stage's wheels only"


# -- IAM ---------------------------------------------------------------------------------------------


def test_iam_documents_are_well_formed() -> None:
    assert load_helper().check_iam(DEPLOY / "iam") == []


def test_the_worker_policy_covers_what_kcl_and_the_worker_call() -> None:
    policy = json.loads((DEPLOY / "iam" / "stream-worker-policy.json").read_text(encoding="utf-8"))
    granted: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            granted.setdefault(resource, set()).update(statement["Action"])
    table = "arn:aws:dynamodb:${REGION}:${AWS_ACCOUNT_ID}:table/${APPLICATION_NAME}"
    items = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"}
    for suffix in ("", "-CoordinatorState", "-WorkerMetricStats"):
        assert items | {"dynamodb:CreateTable", "dynamodb:DescribeTable"} <= granted[table + suffix]
    assert "dynamodb:Query" in granted[table + "/index/*"]
    stream = "arn:aws:kinesis:${REGION}:${AWS_ACCOUNT_ID}:stream/${STREAM_NAME}"
    assert {"kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:ListShards"} <= granted[stream]
    assert granted["${TRACKER_ARN}"] == {"personalize:PutEvents"}
    assert granted["arn:aws:s3:::${DEAD_LETTER_BUCKET}/${DEAD_LETTER_PREFIX}/*"] == {"s3:PutObject"}
    # metricsLevel = NONE and retrievalMode = POLLING: no CloudWatch, no enhanced fan-out.
    actions = set().union(*granted.values())
    assert not {a for a in actions if a.startswith("cloudwatch:")}
    assert not {"kinesis:SubscribeToShard", "kinesis:RegisterStreamConsumer"} & actions
