"""The KCL daemon's properties file, rendered from the worker settings.

KCL ignores keys it does not know, silently: the names below were checked against the KCL 3.1.3
multilang source (``MultiLangDaemonConfiguration`` and its delegates), and
``tests/integration/test_supervisor.py`` checks them again against the jars themselves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from stream_worker import kcl_properties
from stream_worker.errors import FatalConfigurationError
from stream_worker.kcl_properties import (
    CHATTY_LOGGERS,
    MILESTONE_LOGGERS,
    child_command,
    credentials_provider,
    logback_config,
    render,
)
from stream_worker.kcl_properties import kcl_properties as render_properties
from stream_worker.settings import WorkerSettings, load_settings

#: Every key the supervisor may write, as KCL 3.1.3 spells it (case matters).
KCL_KEYS = {
    "executableName",
    "applicationName",
    "streamName",
    "regionName",
    "kinesisEndpoint",
    "dynamoDBEndpoint",
    "AwsCredentialsProvider",
    "retrievalMode",
    "initialPositionInStream",
    "metricsLevel",
    "disableWorkerMetrics",
    "callProcessRecordsEvenForEmptyRecordList",
    "workerId",
    "failoverTimeMillis",
    "shardSyncIntervalMillis",
    "parentShardPollIntervalMillis",
    "shutdownGraceMillis",
    "maxRecords",
    "idleTimeBetweenReadsInMillis",
}

#: What ``devstack env`` gives (ports are examples).
LOCAL_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "STREAM_WORKER_STREAM_NAME": "clickstream",
    "STREAM_WORKER_APPLICATION_NAME": "clickstream-to-personalize",
    "STREAM_WORKER_TRACKING_ID": "local-tracker",
    "STREAM_WORKER_KCL_KINESIS_ENDPOINT": "http://127.0.0.1:4567",
    "STREAM_WORKER_KCL_DYNAMODB_ENDPOINT": "http://127.0.0.1:5000/",
}
CHILD = ["/opt/venv/bin/python", "-m", "stream_worker.cli", "process"]
GRACE_PAIR = r"STREAM_WORKER_SHUTDOWN_GRACE_SECONDS.*STREAM_WORKER_SHUTDOWN_GRACE_MILLIS"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No STREAM_WORKER_*, AWS_* or POD_NAME from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith(("STREAM_WORKER_", "AWS_")) or name == "POD_NAME":
            monkeypatch.delenv(name)
    yield


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **overrides: object) -> WorkerSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(**overrides)


def test_local_stack_rendering_is_the_documented_one(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        LOCAL_ENV,
        monkeypatch,
        worker_id="worker-1",
        idle_time_between_reads_millis=250,
        failover_time_millis=2000,
        shard_sync_interval_millis=2000,
        parent_shard_poll_interval_millis=1000,
    )
    properties = render_properties(settings, environ=LOCAL_ENV, executable=CHILD)
    assert render(properties) == (
        "# Written by `stream-worker run` from the STREAM_WORKER_* settings; edits are overwritten.\n"
        "executableName = /opt/venv/bin/python -m stream_worker.cli process\n"
        "applicationName = clickstream-to-personalize\n"
        "streamName = clickstream\n"
        "regionName = us-east-1\n"
        "kinesisEndpoint = http://127.0.0.1:4567\n"
        "dynamoDBEndpoint = http://127.0.0.1:5000\n"
        "AwsCredentialsProvider = EnvironmentVariableCredentialsProvider\n"
        "retrievalMode = POLLING\n"
        "initialPositionInStream = TRIM_HORIZON\n"
        "metricsLevel = NONE\n"
        "disableWorkerMetrics = true\n"
        "callProcessRecordsEvenForEmptyRecordList = true\n"
        "workerId = worker-1\n"
        "failoverTimeMillis = 2000\n"
        "shardSyncIntervalMillis = 2000\n"
        "parentShardPollIntervalMillis = 1000\n"
        "shutdownGraceMillis = 20000\n"
        "maxRecords = 10000\n"
        "idleTimeBetweenReadsInMillis = 250\n"
    )


def test_every_key_is_one_kcl_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(LOCAL_ENV, monkeypatch)
    assert set(render_properties(settings, environ=LOCAL_ENV, executable=CHILD)) == KCL_KEYS


def test_production_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_REGION": "eu-west-1", "POD_NAME": "stream-worker-7d9f-abcde"}
    settings = settings_from(env, monkeypatch)
    properties = render_properties(settings, environ=env, executable=CHILD)
    assert "kinesisEndpoint" not in properties
    assert "dynamoDBEndpoint" not in properties
    assert properties["AwsCredentialsProvider"] == "DefaultCredentialsProvider"
    assert properties["regionName"] == "eu-west-1"
    assert properties["workerId"] == "stream-worker-7d9f-abcde"
    assert properties["shutdownGraceMillis"] == "20000"
    assert int(properties["shutdownGraceMillis"]) > settings.shutdown_grace_seconds * 1000
    assert properties["retrievalMode"] == "POLLING"
    assert properties["metricsLevel"] == "NONE"
    assert properties["callProcessRecordsEvenForEmptyRecordList"] == "true"


def test_endpoints_only_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    settings = settings_from(env, monkeypatch, kcl_kinesis_endpoint="http://127.0.0.1:4567")
    properties = render_properties(settings, environ=env, executable=CHILD)
    assert properties["kinesisEndpoint"] == "http://127.0.0.1:4567"
    assert "dynamoDBEndpoint" not in properties
    blank = settings_from({"STREAM_WORKER_KCL_DYNAMODB_ENDPOINT": " "}, monkeypatch)
    assert blank.kcl_dynamodb_endpoint is None


@pytest.mark.parametrize(
    ("kinesis", "dynamodb", "expected"),
    [
        ("http://127.0.0.1:4567", "http://127.0.0.1:5000", "EnvironmentVariableCredentialsProvider"),
        ("http://kinesis-mock:4567", "http://moto:5000", "EnvironmentVariableCredentialsProvider"),
        ("https://localhost:4567", None, "EnvironmentVariableCredentialsProvider"),
        (None, None, "DefaultCredentialsProvider"),
        ("https://vpce-0a1b.kinesis.eu-west-1.vpce.amazonaws.com", None, "DefaultCredentialsProvider"),
        ("http://127.0.0.1:4567", "https://dynamodb.eu-west-1.amazonaws.com", "DefaultCredentialsProvider"),
    ],
)
def test_credentials_provider_follows_the_endpoints(
    kinesis: str | None, dynamodb: str | None, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from({}, monkeypatch, kcl_kinesis_endpoint=kinesis, kcl_dynamodb_endpoint=dynamodb)
    assert credentials_provider(settings) == expected


def test_an_explicit_credentials_provider_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = "StsAssumeRoleCredentialsProvider|arn:aws:iam::123456789012:role/worker|kcl"
    settings = settings_from(LOCAL_ENV, monkeypatch, kcl_credentials_provider=provider)
    properties = render_properties(settings, environ=LOCAL_ENV, executable=CHILD)
    assert properties["AwsCredentialsProvider"] == provider


def test_local_endpoints_without_environment_credentials_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in LOCAL_ENV.items() if k != "AWS_SECRET_ACCESS_KEY"}
    settings = settings_from(env, monkeypatch)
    with pytest.raises(FatalConfigurationError, match=r"AWS_SECRET_ACCESS_KEY.*STREAM_WORKER_KCL_CREDENTIALS_PROVIDER"):
        render_properties(settings, environ=env, executable=CHILD)


def test_worker_id_defaults_to_the_pod_then_host_and_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(LOCAL_ENV, monkeypatch)
    assert render_properties(settings, environ=LOCAL_ENV, executable=CHILD)["workerId"] == (
        f"{socket.gethostname()}-{os.getpid()}"
    )
    with_pod = {**LOCAL_ENV, "POD_NAME": "stream-worker-0"}
    assert render_properties(settings, environ=with_pod, executable=CHILD)["workerId"] == "stream-worker-0"
    named = settings_from(LOCAL_ENV, monkeypatch, worker_id="blue-1")
    assert render_properties(named, environ=with_pod, executable=CHILD)["workerId"] == "blue-1"


def test_region_comes_from_the_settings_then_the_sdk_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_DEFAULT_REGION": "ap-south-1"}
    settings = settings_from(env, monkeypatch)
    assert render_properties(settings, environ=env, executable=CHILD)["regionName"] == "ap-south-1"
    pinned = settings_from(env, monkeypatch, region="eu-central-1")
    assert render_properties(pinned, environ=env, executable=CHILD)["regionName"] == "eu-central-1"
    with pytest.raises(FatalConfigurationError, match="STREAM_WORKER_REGION"):
        render_properties(settings_from({}, monkeypatch), environ={}, executable=CHILD)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STREAM_WORKER_SHUTDOWN_GRACE_MILLIS", "0"),
        ("STREAM_WORKER_KCL_KINESIS_ENDPOINT", "127.0.0.1:4567"),
        ("STREAM_WORKER_KCL_DYNAMODB_ENDPOINT", "ftp://127.0.0.1:5000"),
        ("STREAM_WORKER_MAX_RECORDS", "20000"),
        ("STREAM_WORKER_INITIAL_POSITION", "AT_SOME_POINT"),
        ("STREAM_WORKER_METRICS_PORT", "0"),
        ("STREAM_WORKER_FAILOVER_TIME_MILLIS", "soon"),
        ("STREAM_WORKER_KCL_LOG_LEVEL", "CHATTY"),
    ],
)
def test_a_bad_setting_is_named_by_its_variable(variable: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(FatalConfigurationError, match=variable):
        load_settings()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"application_name": "ab"}, "STREAM_WORKER_APPLICATION_NAME"),
        ({"application_name": "clickstream to personalize"}, "STREAM_WORKER_APPLICATION_NAME"),
        ({"stream_name": "click/stream"}, "STREAM_WORKER_STREAM_NAME"),
        ({"shutdown_grace_seconds": 30.0}, GRACE_PAIR),
        ({"shutdown_grace_millis": 15_000}, GRACE_PAIR),
    ],
)
def test_settings_the_daemon_cannot_use_are_named(
    overrides: dict[str, object], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(LOCAL_ENV, monkeypatch, **overrides)
    with pytest.raises(FatalConfigurationError, match=named):
        render_properties(settings, environ=LOCAL_ENV, executable=CHILD)


def test_values_are_escaped_the_java_properties_way() -> None:
    text = render({"workerId": " lead\\tab\tcafé\U0001f3b0", "applicationName": "a=b:c#d"})
    lines = text.splitlines()[1:]
    assert lines[0] == "workerId = \\ lead\\\\tab\\tcaf\\u00e9\\ud83c\\udfb0"
    assert lines[1] == "applicationName = a=b:c#d"  # separators and comment marks count only in keys
    text.encode("ascii")


def test_the_child_is_this_interpreter_running_the_cli_module() -> None:
    assert child_command() == [sys.executable, "-m", "stream_worker.cli", "process"]
    with pytest.raises(FatalConfigurationError, match="whitespace"):
        child_command("/Users/me/My Projects/.venv/bin/python")


def test_the_cli_module_runs_as_a_script_and_prints_the_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STREAM_WORKER_")}, **LOCAL_ENV}
    env["STREAM_WORKER_WORKER_ID"] = "printed"
    result = subprocess.run(
        [sys.executable, "-m", "stream_worker.cli", "run", "--print-properties"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "workerId = printed\n" in result.stdout
    assert f"executableName = {sys.executable} -m stream_worker.cli process\n" in result.stdout


def test_the_cli_names_a_bad_setting_and_exits_2() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STREAM_WORKER_")}, **LOCAL_ENV}
    env["STREAM_WORKER_SHUTDOWN_GRACE_MILLIS"] = "-1"
    result = subprocess.run(
        [sys.executable, "-m", "stream_worker.cli", "run", "--print-properties"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "STREAM_WORKER_SHUTDOWN_GRACE_MILLIS" in result.stderr


def test_logback_writes_json_lines_quiets_the_chatty_loggers_and_keeps_the_milestones() -> None:
    info = ET.fromstring(logback_config("INFO"))
    assert info.find("./appender/encoder").get("class") == "ch.qos.logback.classic.encoder.JsonEncoder"  # type: ignore[union-attr]
    assert info.find("./appender/target").text == "System.out"  # type: ignore[union-attr]
    assert info.find("./root").get("level") == "INFO"  # type: ignore[union-attr]
    assert {e.get("name"): e.get("level") for e in info.findall("./logger")} == dict.fromkeys(CHATTY_LOGGERS, "WARN")
    warn = ET.fromstring(logback_config("WARN"))
    assert warn.find("./root").get("level") == "WARN"  # type: ignore[union-attr]
    assert {e.get("name"): e.get("level") for e in warn.findall("./logger")} == dict.fromkeys(MILESTONE_LOGGERS, "INFO")
    debug = ET.fromstring(logback_config("DEBUG"))
    assert debug.findall("./logger") == []
    assert debug.find("./root").get("level") == "DEBUG"  # type: ignore[union-attr]


def test_logback_takes_levels_of_single_loggers_over_its_defaults() -> None:
    chatty = CHATTY_LOGGERS[0]
    config = ET.fromstring(
        logback_config("INFO", {"software.amazon.kinesis.retrieval.polling": "DEBUG", chatty: "INFO"})
    )
    levels = {e.get("name"): e.get("level") for e in config.findall("./logger")}
    assert levels["software.amazon.kinesis.retrieval.polling"] == "DEBUG"
    assert levels[chatty] == "INFO"
    assert config.find("./root").get("level") == "INFO"  # type: ignore[union-attr]


def declared_level(config: ET.Element, logger: str) -> str:
    """The level logback would give ``logger`` under ``config``: its nearest declared ancestor's, else root's."""
    declared = {e.get("name"): e.get("level") for e in config.findall("./logger")}
    parts = logger.split(".")
    for end in range(len(parts), 0, -1):
        level = declared.get(".".join(parts[:end]))
        if level is not None:
            return level
    return config.find("./root").get("level") or ""  # type: ignore[union-attr]


@pytest.mark.parametrize("root", ["ERROR", "WARN", "INFO", "DEBUG"])
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"software.amazon.kinesis": "WARN"},
        {"software": "ERROR", "software.amazon.kinesis.multilang": "ERROR"},
        dict.fromkeys(MILESTONE_LOGGERS, "WARN"),
    ],
    ids=["none", "kcl-warn", "parents-error", "milestones-warn"],
)
def test_the_milestone_loggers_stay_at_info_whatever_the_levels_over_them(root: str, overrides: dict[str, str]) -> None:
    config = ET.fromstring(logback_config(root, overrides))
    for milestone in MILESTONE_LOGGERS:
        assert declared_level(config, milestone) in ("INFO", "DEBUG"), (milestone, root, overrides)
    # The overrides still hold for everything else under them.
    for name, level in overrides.items():
        if name not in MILESTONE_LOGGERS:
            assert declared_level(config, name) == level
            assert declared_level(config, f"{name}.SomeOtherClass") == level


def test_a_milestone_logger_keeps_a_more_verbose_level_than_info() -> None:
    multilang = "software.amazon.kinesis.multilang"
    config = ET.fromstring(logback_config("WARN", {multilang: "TRACE", "software.amazon.kinesis": "WARN"}))
    assert declared_level(config, f"{multilang}.MultiLangDaemon") == "TRACE"
    assert declared_level(config, f"{multilang}.MultiLangShardRecordProcessor") == "TRACE"
    assert declared_level(config, "software.amazon.kinesis.coordinator.Scheduler") == "INFO"
    debug = ET.fromstring(logback_config("DEBUG"))
    assert all(declared_level(debug, milestone) == "DEBUG" for milestone in MILESTONE_LOGGERS)


def test_logger_levels_are_read_normalized_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_WORKER_KCL_LOG_LEVELS", " software.amazon.kinesis.retrieval.polling=debug , a.B$c=WARN,")
    settings = load_settings()
    assert settings.kcl_logger_levels() == {"software.amazon.kinesis.retrieval.polling": "DEBUG", "a.B$c": "WARN"}
    assert settings.kcl_log_levels == "software.amazon.kinesis.retrieval.polling=DEBUG,a.B$c=WARN"
    for bad in ("software.amazon.kinesis=LOUD", "no-level", "bad name=DEBUG", "a..b=INFO"):
        monkeypatch.setenv("STREAM_WORKER_KCL_LOG_LEVELS", bad)
        with pytest.raises(FatalConfigurationError, match="STREAM_WORKER_KCL_LOG_LEVELS"):
            load_settings()


def test_the_main_class_is_the_multilang_daemon() -> None:
    assert kcl_properties.DAEMON_MAIN_CLASS == "software.amazon.kinesis.multilang.MultiLangDaemon"
