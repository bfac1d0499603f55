"""The KCL MultiLangDaemon's configuration, rendered from :class:`WorkerSettings`.

KCL reads a Java properties file and sets each key as a JavaBean property of
``software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration`` (KCL 3.1.3); a key it does
not know is **silently ignored**, so every key written here was checked against that source:

- ``executableName``: ``MultiLangDaemonConfig``, split on spaces into each shard child's argv;
- ``applicationName`` (also the lease table's name), ``streamName``, ``workerId`` (``setWorkerId``);
- ``regionName``: ``setRegionName(Region)``, for the Kinesis, DynamoDB and CloudWatch clients;
- ``kinesisEndpoint``, ``dynamoDBEndpoint``: ``setKinesisEndpoint``/``setDynamoDBEndpoint`` (endpointOverride);
- ``AwsCredentialsProvider``: ``KinesisClientLibConfigurator.processKey`` -> ``setAwsCredentialsProvider``;
  short names resolve in ``software.amazon.awssdk.auth.credentials`` (both ours have a static ``create()``);
- ``retrievalMode``: ``RetrievalMode.from`` (FANOUT, POLLING, DEFAULT);
- ``initialPositionInStream``: ``setInitialPositionInStream(InitialPositionInStream)``;
- ``metricsLevel`` (``MetricsConfig``), ``callProcessRecordsEvenForEmptyRecordList`` (``ProcessorConfig``);
- ``disableWorkerMetrics``: ``WorkerUtilizationAwareAssignmentConfigBean``, a delegate of the configuration;
- ``failoverTimeMillis``, ``shardSyncIntervalMillis`` (``LeaseManagementConfig``),
  ``parentShardPollIntervalMillis`` (``CoordinatorConfig``);
- ``shutdownGraceMillis``: ``MultiLangDaemon.setupShutdownHook`` (0 means no graceful shutdown at all);
- ``maxRecords``, ``idleTimeBetweenReadsInMillis``: ``PollingConfigBean``, a delegate of the configuration.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from stream_worker.errors import FatalConfigurationError
from stream_worker.settings import ENV_PREFIX, WorkerSettings

#: The console entry point KCL starts once per shard lease (``<python> -m stream_worker.cli process``).
CHILD_MODULE: Final = "stream_worker.cli"
#: Providers (short names) KCL 3.1.3 finds in ``software.amazon.awssdk.auth.credentials``.
LOCAL_CREDENTIALS_PROVIDER: Final = "EnvironmentVariableCredentialsProvider"
AWS_CREDENTIALS_PROVIDER: Final = "DefaultCredentialsProvider"
#: The daemon's main class in the amazon-kinesis-client-multilang jar.
DAEMON_MAIN_CLASS: Final = "software.amazon.kinesis.multilang.MultiLangDaemon"

#: DynamoDB table names: 3-255 of these; KCL also creates ``<name>-CoordinatorState`` and
#: ``<name>-WorkerMetricStats``, hence the shorter maximum.
_TABLE_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{3,230}")
_STREAM_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_LOCAL_HOSTS: Final = frozenset({"localhost", "host.docker.internal"})


def child_command(python: str | None = None) -> list[str]:
    """The argv of a shard child: this interpreter (works in a venv without activation)."""
    executable = python or sys.executable
    if not executable or any(ch.isspace() for ch in executable):
        raise FatalConfigurationError(
            f"the Python executable path {executable!r} is empty or holds whitespace, which KCL's "
            "executableName cannot carry (it splits on spaces): install the worker in a path without spaces"
        )
    return [executable, "-m", CHILD_MODULE, "process"]


def default_worker_id(environ: Mapping[str, str]) -> str:
    """$POD_NAME (stable across container restarts in a pod), else ``<hostname>-<pid>``."""
    pod = environ.get("POD_NAME", "").strip()
    return pod or f"{socket.gethostname()}-{os.getpid()}"


def is_local_endpoint(url: str) -> bool:
    """True for a stand-in: plain http (every AWS endpoint is https) or a loopback/local host."""
    parts = urlsplit(url)
    if parts.scheme == "http":
        return True
    host = (parts.hostname or "").lower()
    if host in _LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_provider(settings: WorkerSettings) -> str:
    """The explicit setting; else environment credentials for local endpoints; else the default chain.

    ``DefaultCredentialsProvider`` covers IRSA (web identity token) on EKS, instance profiles and the
    environment; against a local stack the environment alone is meant, and KCL must not wander off
    to the instance metadata service.
    """
    if settings.kcl_credentials_provider:
        return settings.kcl_credentials_provider
    endpoints = [e for e in (settings.kcl_kinesis_endpoint, settings.kcl_dynamodb_endpoint) if e]
    if endpoints and all(is_local_endpoint(e) for e in endpoints):
        return LOCAL_CREDENTIALS_PROVIDER
    return AWS_CREDENTIALS_PROVIDER


def resolve_region(settings: WorkerSettings, environ: Mapping[str, str]) -> str:
    region = settings.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise FatalConfigurationError(
            f"no AWS region for the KCL daemon: set {ENV_PREFIX}REGION, AWS_REGION or AWS_DEFAULT_REGION"
        )
    return region


def kcl_properties(
    settings: WorkerSettings,
    *,
    environ: Mapping[str, str] | None = None,
    executable: Sequence[str] | None = None,
) -> dict[str, str]:
    """The daemon's properties, in file order. Raises FatalConfigurationError naming the bad setting."""
    env = os.environ if environ is None else environ
    _check(settings, env)
    command = list(executable) if executable is not None else child_command()
    properties: dict[str, str] = {
        "executableName": " ".join(command),
        "applicationName": settings.application_name,
        "streamName": settings.stream_name,
        "regionName": resolve_region(settings, env),
    }
    if settings.kcl_kinesis_endpoint:
        properties["kinesisEndpoint"] = settings.kcl_kinesis_endpoint
    if settings.kcl_dynamodb_endpoint:
        properties["dynamoDBEndpoint"] = settings.kcl_dynamodb_endpoint
    provider = credentials_provider(settings)
    if provider == LOCAL_CREDENTIALS_PROVIDER and not (
        env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")
    ):
        raise FatalConfigurationError(
            f"the KCL daemon uses {LOCAL_CREDENTIALS_PROVIDER} (local endpoints), but AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY are not both set; set them or {ENV_PREFIX}KCL_CREDENTIALS_PROVIDER"
        )
    properties.update(
        {
            "AwsCredentialsProvider": provider,
            "retrievalMode": "POLLING",
            "initialPositionInStream": settings.initial_position,
            "metricsLevel": "NONE",
            "disableWorkerMetrics": "true",
            "callProcessRecordsEvenForEmptyRecordList": "true",
            "workerId": settings.worker_id or default_worker_id(env),
            "failoverTimeMillis": str(settings.failover_time_millis),
            "shardSyncIntervalMillis": str(settings.shard_sync_interval_millis),
            "parentShardPollIntervalMillis": str(settings.parent_shard_poll_interval_millis),
            "shutdownGraceMillis": str(settings.shutdown_grace_millis),
            "maxRecords": str(settings.max_records),
            "idleTimeBetweenReadsInMillis": str(settings.idle_time_between_reads_millis),
        }
    )
    return properties


def _check(settings: WorkerSettings, environ: Mapping[str, str]) -> None:
    if not _TABLE_NAME.fullmatch(settings.application_name):
        raise FatalConfigurationError(
            f"{ENV_PREFIX}APPLICATION_NAME={settings.application_name!r}: it names the KCL lease table, so it "
            "must be 3-230 characters of A-Z a-z 0-9 _ . -"
        )
    if not _STREAM_NAME.fullmatch(settings.stream_name):
        raise FatalConfigurationError(
            f"{ENV_PREFIX}STREAM_NAME={settings.stream_name!r}: not a Kinesis stream name "
            "(1-128 characters of A-Z a-z 0-9 _ . -)"
        )
    if settings.shutdown_grace_seconds * 1000 >= settings.shutdown_grace_millis:
        raise FatalConfigurationError(
            f"{ENV_PREFIX}SHUTDOWN_GRACE_SECONDS ({settings.shutdown_grace_seconds:g}) must be shorter than "
            f"{ENV_PREFIX}SHUTDOWN_GRACE_MILLIS ({settings.shutdown_grace_millis} ms): a shard's drain has to "
            "finish within KCL's graceful shutdown"
        )
    worker_id = settings.worker_id or default_worker_id(environ)
    if any(ch in worker_id for ch in "\r\n"):
        raise FatalConfigurationError(f"{ENV_PREFIX}WORKER_ID must be one line")


def _escape(value: str) -> str:
    """``value`` as a Java properties value (``Properties.load`` reads ISO-8859-1 with escapes)."""
    out: list[str] = []
    specials = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
    for index, ch in enumerate(value):
        if ch in specials:
            out.append(specials[ch])
        elif index == 0 and ch == " ":
            out.append("\\ ")  # leading blanks would be taken for the separator
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            encoded = ch.encode("utf-16-be")
            out.extend(f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04x}" for i in range(0, len(encoded), 2))
    return "".join(out)


def render(properties: Mapping[str, str]) -> str:
    """The properties file's text: ``key = value`` lines, values escaped the Java way."""
    lines = ["# Written by `stream-worker run` from the STREAM_WORKER_* settings; edits are overwritten."]
    lines += [f"{key} = {_escape(value)}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def write_properties(path: Path, properties: Mapping[str, str]) -> Path:
    path.write_text(render(properties), encoding="ascii")
    return path


#: KCL loggers that say something at INFO for every MultiLang message (several lines per shard per
#: GetRecords poll) or every leader check: WARN unless the daemon logs at DEBUG.
CHATTY_LOGGERS: Final = (
    "software.amazon.kinesis.multilang.LineReaderTask",
    "software.amazon.kinesis.multilang.MessageWriter",
    "software.amazon.kinesis.multilang.MultiLangProtocol",
    "software.amazon.kinesis.leader.DynamoDBLockBasedLeaderDecider",
)


#: KCL loggers whose INFO lines the supervisor acts on (worker initialized, shutdown complete, a shard
#: child exited): always at INFO or more verbose, whatever the root level and the levels of single
#: loggers say (the supervisor does not re-emit the lines those levels leave out).
MILESTONE_LOGGERS: Final = (
    "software.amazon.kinesis.coordinator.Scheduler",
    "software.amazon.kinesis.multilang.MultiLangDaemon",
    "software.amazon.kinesis.multilang.MultiLangShardRecordProcessor",
)

#: Logback's levels, most verbose first.
_VERBOSITY: Final = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")


def effective_level(logger: str, root: str, loggers_levels: Mapping[str, str]) -> str:
    """The level logback gives ``logger``: its own, else that of its nearest declared ancestor, else
    the root level (logback separates logger names at ``.`` and ``$``)."""
    name = logger
    while name:
        if name in loggers_levels:
            return loggers_levels[name].upper()
        cut = max(name.rfind("."), name.rfind("$"))
        name = name[:cut] if cut > 0 else ""
    return root.upper()


def _more_verbose(level: str, than: str) -> bool:
    known = {name: rank for rank, name in enumerate(_VERBOSITY)}
    return known.get(level.upper(), len(_VERBOSITY)) < known.get(than.upper(), len(_VERBOSITY))


def logback_config(level: str, loggers_levels: Mapping[str, str] | None = None) -> str:
    """Logback configuration for the daemon: one JSON object per line on stdout (logback's
    ``JsonEncoder``; the supervisor re-emits each as a structured log line on its stderr).
    ``loggers_levels`` (logger name -> level) override the root level and our defaults, except that
    the :data:`MILESTONE_LOGGERS` never get less verbose than INFO."""
    loggers: dict[str, str] = {}
    if level == "INFO":
        loggers.update(dict.fromkeys(CHATTY_LOGGERS, "WARN"))
    loggers.update(loggers_levels or {})
    for milestone in MILESTONE_LOGGERS:
        if _more_verbose("INFO", effective_level(milestone, level, loggers)):
            loggers[milestone] = "INFO"
    declared = "".join(f'  <logger name="{name}" level="{value}"/>\n' for name, value in loggers.items())
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by `stream-worker run`: the KCL daemon logs one JSON object per line on stdout. -->
<configuration>
  <appender name="JSON" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.out</target>
    <encoder class="ch.qos.logback.classic.encoder.JsonEncoder"/>
  </appender>
{declared}  <root level="{level}">
    <appender-ref ref="JSON"/>
  </root>
</configuration>
"""
