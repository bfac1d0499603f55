"""The deployment files agree with the code: settings, metric names, the port, the user, shutdown timing.

Schemas, rendering and the alert rules themselves are checked by .ci/validate-deploy.sh (kubeconform,
kustomize, promtool); these tests read the source files and need nothing but PyYAML.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
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
    return set(SUPERVISOR_METRICS) | sample_names(registry)


def sample_names(registry: CollectorRegistry) -> set[str]:
    """The sample names of ``registry``'s metrics as Prometheus sees them (counters with ``_total``,
    histograms as their three series)."""
    names: set[str] = set()
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


# == the batch pipeline ==============================================================================

BATCH = DEPLOY / "k8s" / "batch"
PAM = DEPLOY / "k8s" / "pam"
COMPONENTS = DEPLOY / "k8s" / "components"
DAY_SECONDS = 24 * 3600


def generator_literals(kustomization: Path, name: str) -> dict[str, str]:
    (generator,) = [g for g in one(kustomization)["configMapGenerator"] if g["name"] == name]
    return dict(literal.split("=", 1) for literal in generator["literals"])


def cronjob() -> dict[str, Any]:
    return one(BATCH / "cronjob.yaml")


def batch_pod() -> dict[str, Any]:
    pod: dict[str, Any] = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


def batch_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = batch_pod()["containers"]
    (main,) = containers
    return main


def batch_script() -> str:
    main = batch_container()
    assert main["command"] == ["/bin/sh", "-c"]
    (script,) = main["args"]
    return str(script)


def batch_steps() -> list[list[str]]:
    """The `batch ...` command lines of the script, in order."""
    return [line.split() for line in batch_script().splitlines() if line.startswith("batch ")]


def dev_batch_config() -> dict[str, str]:
    return {**generator_literals(BATCH / "kustomization.yaml", "batch-config"), **env_file(DEV / "batch.env")}


def test_every_batch_setting_in_the_manifests_exists_and_is_valid() -> None:
    from batch.settings import ENV_PREFIX as BATCH_PREFIX
    from batch.settings import BatchSettings

    secret_env = {item["name"] for item in batch_container()["env"] if "valueFrom" in item}
    assert "BATCH_DATABASE_URL" in secret_env, "the database URL comes from a Secret"
    for config in (generator_literals(BATCH / "kustomization.yaml", "batch-config"), dev_batch_config()):
        fields: dict[str, Any] = {}
        for key, value in config.items():
            if key.startswith(BATCH_PREFIX):
                name = key.removeprefix(BATCH_PREFIX).lower()
                assert name in BatchSettings.model_fields, f"{key} is not a batch setting (ignored silently)"
                fields[name] = value
        assert {"s3_bucket", "s3_prefix", "similar_table"} <= set(fields)
        BatchSettings(**fields, database_url=env_file(DEV / "batch-database.env")["url"])
    assert dev_batch_config()["BATCH_PERSONALIZE_ROLE_ARN"].startswith("arn:aws:iam::")


def test_the_batch_steps_are_real_commands_in_the_agreed_order() -> None:
    from batch.cli import _parser

    steps = batch_steps()
    assert [step[:3] for step in steps] == [
        ["batch", "datasets"],
        ["batch", "personalize", "apply"],
        ["batch", "personalize", "train"],
        ["batch", "similar", "run"],
    ]
    for step in steps:
        _parser().parse_args(step[1:])  # exits (SystemExit) on an unknown command or option


def test_the_batch_script_stops_at_the_first_failing_step_with_its_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    fake = tmp_path / "bin" / "batch"
    fake.parent.mkdir()
    # Logs its arguments; exits 3 when they are $FAIL_AT.
    fake.write_text('#!/bin/sh\necho "$*" >> "$CALLS"\n[ "$*" = "${FAIL_AT:-}" ] && exit 3\nexit 0\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "CALLS": str(log)}
    steps = [" ".join(step[1:]) for step in batch_steps()]

    done = subprocess.run(["/bin/sh", "-c", batch_script()], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert log.read_text(encoding="utf-8").splitlines() == steps

    log.unlink()
    failed = subprocess.run(
        ["/bin/sh", "-c", batch_script()], env={**env, "FAIL_AT": steps[1]}, capture_output=True, text=True, check=False
    )
    assert failed.returncode == 3, "the pod must fail with the step's exit status"
    assert log.read_text(encoding="utf-8").splitlines() == steps[:2], "no step runs after a failed one"


def test_the_cronjob_runs_nightly_one_at_a_time_within_a_day() -> None:
    from batch.settings import BatchSettings

    spec = cronjob()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5 and spec["schedule"].split()[2:] == ["*", "*", "*"]
    assert 0 < spec["startingDeadlineSeconds"] < DAY_SECONDS
    job = spec["jobTemplate"]["spec"]
    assert 0 <= job["backoffLimit"] <= 2
    assert job["ttlSecondsAfterFinished"] >= DAY_SECONDS
    config = generator_literals(BATCH / "kustomization.yaml", "batch-config")
    fields = BatchSettings.model_fields
    personalize_wait = float(
        config.get("BATCH_PERSONALIZE_WAIT_TIMEOUT_SECONDS", fields["personalize_wait_timeout_seconds"].default)
    )
    similar_wait = float(config.get("BATCH_SIMILAR_JOB_TIMEOUT_SECONDS", fields["similar_job_timeout_seconds"].default))
    # apply and train each wait up to personalize_wait; the batch inference job up to similar_wait.
    assert 2 * personalize_wait + similar_wait < job["activeDeadlineSeconds"] < DAY_SECONDS
    assert batch_pod()["restartPolicy"] == "Never"


def test_the_pod_failure_policy_fails_fast_on_the_exit_codes_a_retry_cannot_fix() -> None:
    from batch.cli import EXIT_CONFIGURATION, EXIT_FAILED, EXIT_NOT_READY

    rules = cronjob()["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    (fail_job,) = [rule for rule in rules if rule["action"] == "FailJob"]
    assert fail_job["onExitCodes"]["containerName"] == batch_container()["name"]
    assert set(fail_job["onExitCodes"]["values"]) == {EXIT_NOT_READY, EXIT_CONFIGURATION}
    assert EXIT_FAILED not in fail_job["onExitCodes"]["values"], "a failed call or resource is worth a retry"
    assert any(rule["action"] == "Ignore" for rule in rules), "evictions do not count against backoffLimit"


@pytest.mark.parametrize("pod", ["batch", "pam"])
def test_batch_and_pam_pods_are_restricted_with_tmp_the_only_writable_place(pod: str) -> None:
    spec = batch_pod() if pod == "batch" else one(PAM / "deployment.yaml")["spec"]["template"]["spec"]
    (main,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == UID
    assert spec["automountServiceAccountToken"] is False
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {item["name"]: item.get("value") for item in main["env"]}
    assert env["TMPDIR"] == "/tmp"
    # The image's PROMETHEUS_MULTIPROC_DIR (for the worker's shard children) would point prometheus_client
    # at a folder that does not exist here.
    assert env["PROMETHEUS_MULTIPROC_DIR"] == ""
    assert set(main["resources"]) == {"requests", "limits"}
    account = one((BATCH if pod == "batch" else PAM) / "serviceaccount.yaml")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]


def test_the_one_off_job_is_copied_from_the_cronjob_and_nothing_else_is_rendered() -> None:
    component = COMPONENTS / "batch-run-once"
    copy = one(component / "copy-job-spec.yaml")
    (job_spec,) = [r for r in copy["replacements"] if r["source"]["fieldPath"] == "spec.jobTemplate.spec"]
    assert job_spec["source"]["name"] == cronjob()["metadata"]["name"]
    job = one(component / "job.yaml")
    assert job_spec["targets"][0]["select"] == {"kind": "Job", "name": job["metadata"]["name"]}
    assert job["spec"] == {}, "the Job's spec comes from the CronJob only"
    keep = one(component / "keep-only-the-job.yaml")
    (annotation,) = job["metadata"]["annotations"]
    assert keep["target"]["annotationSelector"] == f"{annotation}!=true"
    run = one(DEV.parent / "dev-batch-run" / "kustomization.yaml")
    assert run["resources"] == ["../dev"] and run["components"] == ["../../components/batch-run-once"]


def test_what_the_one_off_job_refers_to_by_name_is_deployed_without_a_hash_suffix() -> None:
    # The dev-batch-run rendering drops the ConfigMaps and Secrets: the Job must find the overlay's.
    unhashed = {
        g["name"]
        for kustomization in (BATCH / "kustomization.yaml", DEV / "kustomization.yaml")
        for key in ("configMapGenerator", "secretGenerator")
        for g in one(kustomization).get(key, [])
        if g.get("options", {}).get("disableNameSuffixHash")
    }
    referenced = {ref["configMapRef"]["name"] for ref in batch_container()["envFrom"]}
    referenced |= {
        item["valueFrom"]["secretKeyRef"]["name"] for item in batch_container()["env"] if "valueFrom" in item
    }
    patch = one(DEV / "batch-cronjob-patch.yaml")
    (patched,) = patch["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    referenced |= {next(iter(ref.values()))["name"] for ref in patched["envFrom"]}
    assert referenced <= unhashed, f"hashed names the one-off Job cannot find: {sorted(referenced - unhashed)}"


# == PAM ===============================================================================================

PAM_PORT = 8080
LOBBY_ROUTE = "/v1/players/{player_id}/lobby"


def pam_container() -> dict[str, Any]:
    return container(one(PAM / "deployment.yaml"))


def dev_pam_config() -> dict[str, str]:
    return {**generator_literals(PAM / "kustomization.yaml", "pam-config"), **env_file(DEV / "pam.env")}


def pam_metric_names() -> set[str]:
    from pam.api.metrics import LobbyMetrics

    registry = CollectorRegistry()
    LobbyMetrics(registry)
    return sample_names(registry)


def rules_of(path: Path) -> list[dict[str, Any]]:
    return [rule for group in one(path)["spec"]["groups"] for rule in group["rules"]]


def test_every_pam_setting_in_the_manifests_exists_and_is_valid() -> None:
    from pam.settings import ENV_PREFIX as PAM_PREFIX
    from pam.settings import PamSettings

    env = {item["name"]: item for item in pam_container()["env"]}
    assert "valueFrom" in env["PAM_DATABASE_URL"], "the database URL comes from a Secret"
    for config in (generator_literals(PAM / "kustomization.yaml", "pam-config"), dev_pam_config()):
        fields: dict[str, Any] = {}
        for key, value in {**config, **{k: v["value"] for k, v in env.items() if "value" in v}}.items():
            if key.startswith(PAM_PREFIX):
                name = key.removeprefix(PAM_PREFIX).lower()
                assert name in PamSettings.model_fields, f"{key} is not a PAM setting (ignored silently)"
                fields[name] = value
        assert {"catalog_url", "similar_table", "jwt_issuer", "jwt_audience", "jwt_public_key"} <= set(fields)
        PamSettings(**fields)
    dev = dev_pam_config()
    for key in ("PAM_POPULAR_CAMPAIGN_ARN", "PAM_TRENDING_CAMPAIGN_ARN", "PAM_FOR_YOU_CAMPAIGN_ARN"):
        assert ":campaign/" in dev[key]
    assert ":filter/" in dev["PAM_UNAVAILABLE_FILTER_ARN"]
    # The dev overlay's HMAC secret replaces the public key (pam token signs with it).
    assert len(env_file(DEV / "pam-jwt-dev.env")["secret"]) >= 32


def test_the_pam_command_port_and_probes_agree_with_the_code() -> None:
    from pam.cli import _parser
    from pam.settings import PamSettings

    main = pam_container()
    command = main["command"]
    assert command[:2] == ["pam", "serve"]
    args = _parser().parse_args(command[1:])
    assert args.host == "0.0.0.0" and args.port == PAM_PORT
    assert PamSettings.model_fields["port"].default == PAM_PORT
    assert main["ports"] == [{"name": "http", "containerPort": PAM_PORT, "protocol": "TCP"}]
    app = (ROOT / "pam" / "api" / "app.py").read_text(encoding="utf-8")
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert main[probe]["httpGet"] == {"path": path, "port": "http"}
        assert f'Route("{path}"' in app
    assert 'Route("/metrics"' in app
    service = one(PAM / "service.yaml")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"] == one(PAM / "deployment.yaml")["spec"]["selector"]["matchLabels"]
    monitor = one(PAM / "servicemonitor.yaml")
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


def test_pam_scales_on_cpu_spreads_and_drains_one_at_a_time() -> None:
    deployment = one(PAM / "deployment.yaml")
    hpa = one(PAM / "horizontalpodautoscaler.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pam"}
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in pam_container()["resources"]["requests"], "CPU utilization is relative to the request"
    budget = one(PAM / "poddisruptionbudget.yaml")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == 1
    keys = {c["topologyKey"] for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_pam_alerts_use_only_metrics_and_labels_pam_exports() -> None:
    from pam.api.deadline.guard import Outcome

    exported = pam_metric_names()
    rules = rules_of(PAM / "prometheusrule.yaml")
    used = {name for rule in rules for name in re.findall(r"\bpam_[a-z_]+", rule["expr"])}
    assert used, "no pam_ metric in the alert rules?"
    assert used <= exported, f"unknown metrics in the alert rules: {sorted(used - exported)}"
    routes = {route for rule in rules for route in re.findall(r'route="([^"]+)"', rule["expr"])}
    assert routes == {LOBBY_ROUTE}
    assert f'"{LOBBY_ROUTE}"' in (ROOT / "pam" / "api" / "app.py").read_text(encoding="utf-8")
    catalog_outcomes = {"updated", "not_modified", "error"}
    assert all(f'"{outcome}"' in (ROOT / "pam" / "api" / "catalog.py").read_text() for outcome in catalog_outcomes)
    for rule in rules:
        for values in re.findall(r'outcome=~?"([^"]+)"', rule["expr"]):
            assert set(values.split("|")) <= catalog_outcomes | {o.value for o in Outcome}, rule["alert"]


def test_the_latency_alert_threshold_is_the_request_deadline() -> None:
    from pam.settings import PamSettings

    deadline_ms = float(
        generator_literals(PAM / "kustomization.yaml", "pam-config").get(
            "PAM_REQUEST_DEADLINE_MS", PamSettings.model_fields["request_deadline_ms"].default
        )
    )
    (latency,) = [rule for rule in rules_of(PAM / "prometheusrule.yaml") if rule["alert"] == "PamLobbyLatencyHigh"]
    threshold = float(latency["expr"].rsplit(">", 1)[1])
    assert threshold == deadline_ms / 1000
    from pam.api.metrics import REQUEST_BUCKETS

    assert threshold in REQUEST_BUCKETS, "a bucket boundary at the threshold keeps the quantile exact there"


@pytest.mark.parametrize(
    "path", [BASE / "prometheusrule.yaml", BATCH / "prometheusrule.yaml", PAM / "prometheusrule.yaml"]
)
def test_every_rule_file_has_a_promtool_test_for_each_alert(path: Path) -> None:
    rules = rules_of(path)
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    name = one(path)["metadata"]["name"]
    tests = [
        test
        for test_file in (DEPLOY / "k8s" / "tests").glob("*rules-test.yaml")
        if f"{name}.rules.yaml" in one(test_file).get("rule_files", [])
        for test in one(test_file)["tests"]
    ]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert set(names) <= tested, f"alerts never shown to fire in a promtool test: {sorted(set(names) - tested)}"


# == IAM of the batch and PAM ===========================================================================

#: boto3 S3 operations -> the IAM action that authorizes them.
S3_ACTIONS = {
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "PutObject": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
}


#: What a boto3 client is called in our code (``client``, ``self._dynamodb``, ``s3``, ``personalize``...): an
#: attribute of anything else (``url.query``, ``frame.scan``) is not an AWS call.
CLIENT_LIKE = re.compile(r"client|dynamodb|s3|personalize|table", re.IGNORECASE)


def aws_calls(folder: Path, services: tuple[str, ...]) -> dict[str, set[str]]:
    """IAM actions of the boto3 operations the code under ``folder`` names (client.op(...), a bound
    client.op passed on, get_paginator("op")), each with the files that name it."""
    import ast

    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    operations: dict[str, set[str]] = {}
    for service in services:
        prefix = {"personalize-runtime": "personalize"}.get(service, service)
        for operation in session.get_service_model(service).operation_names:
            action = S3_ACTIONS.get(operation, f"s3:{operation}") if service == "s3" else f"{prefix}:{operation}"
            operations.setdefault(xform_name(operation), set()).add(action)
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Attribute) and CLIENT_LIKE.search(ast.unparse(node.value)):
                names.append(node.attr)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get_paginator"
            ):
                names.extend(
                    arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                )
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                # PAM's own JSON client names DynamoDB operations by their X-Amz-Target.
                target = re.fullmatch(r"DynamoDB_20120810\.(\w+)", node.value)
                if target:
                    names.append(xform_name(target.group(1)))
            for name in names:
                for action in operations.get(name, ()):
                    found.setdefault(action, set()).add(path.relative_to(ROOT).as_posix())
    return found


def granted_actions(policy_file: str) -> set[str]:
    policy = json.loads((DEPLOY / "iam" / policy_file).read_text(encoding="utf-8"))
    return {action for statement in policy["Statement"] for action in statement["Action"]}


def test_the_batch_policy_covers_every_aws_call_of_the_batch() -> None:
    called = aws_calls(ROOT / "batch", ("personalize", "s3", "dynamodb"))
    assert {"personalize:CreateDatasetImportJob", "dynamodb:BatchWriteItem", "s3:PutObject"} <= set(called)
    granted = granted_actions("batch-pipeline-policy.json")
    missing = {action: sorted(files) for action, files in called.items() if action not in granted}
    assert not missing, f"the batch calls these without a grant: {missing}"
    assert "iam:PassRole" in granted


def test_the_pam_policy_covers_its_calls_and_nothing_more() -> None:
    called = aws_calls(ROOT / "pam" / "api", ("s3", "dynamodb"))
    assert {"dynamodb:GetItem", "s3:GetObject"} <= set(called)
    # GetRecommendations goes through PAM's own client, by its REST path.
    personalize = (ROOT / "pam" / "api" / "dependencies" / "personalize.py").read_text(encoding="utf-8")
    assert '"/recommendations"' in personalize
    called["personalize:GetRecommendations"] = {"pam/api/dependencies/personalize.py"}
    assert granted_actions("pam-policy.json") == set(called)


def test_the_personalize_service_role_reads_datasets_and_writes_only_batch_output() -> None:
    policy = json.loads((DEPLOY / "iam" / "personalize-service-role-policy.json").read_text(encoding="utf-8"))
    writes = [s for s in policy["Statement"] if "s3:PutObject" in s["Action"]]
    (write,) = writes
    assert write["Resource"].endswith("/output/*")
    trust = json.loads((DEPLOY / "iam" / "personalize-service-role-trust-policy.json").read_text(encoding="utf-8"))
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "personalize.amazonaws.com"}
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == "${AWS_ACCOUNT_ID}"


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/k"}, "no wildcards"),
        ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}, "resource '*'"),
        ({"Effect": "Allow", "Action": "personalize:ListCampaigns", "Resource": ["*", "arn:aws:s3:::b"]}, "beside"),
        ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:*:1:table/t"}, "wildcard in"),
        ({"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:r:1:*"}, "not start with"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket"}, "object ARN"),
        ({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::bucket/*"}, "bucket ARN"),
        ({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "arn:aws:iam::1:role/r"}, "PassedToService"),
        (
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "arn:aws:iam::1:role/r-*",
                "Condition": {"StringEquals": {"iam:PassedToService": "personalize.amazonaws.com"}},
            },
            "name the one role",
        ),
        ({"Effect": "Allow", "NotAction": "s3:GetObject", "Action": "s3:GetObject", "Resource": "*"}, "NotAction"),
        (
            {"Effect": "Allow", "Principal": {"Service": "personalize.amazonaws.com"}, "Action": "sts:AssumeRole"},
            "aws:SourceAccount",
        ),
        (
            {
                "Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/x"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {"x:aud": "sts.amazonaws.com"}},
            },
            ":sub",
        ),
        ({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}, "never '*'"),
    ],
)
def test_the_iam_check_rejects(tmp_path: Path, statement: dict[str, Any], problem: str) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    problems = load_helper().check_iam(tmp_path)
    assert any(problem in found for found in problems), problems


def test_every_iam_document_is_explained_in_the_readme() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for path in (DEPLOY / "iam").glob("*.json"):
        assert path.name in readme, f"deploy/README.md does not mention {path.name}"
    for placeholder in load_helper().IAM_PLACEHOLDERS:
        assert f"${{{placeholder}}}" in readme, f"deploy/README.md does not explain ${{{placeholder}}}"
