"""Benchmark of the Personalize emulator's training: SIMS (and the other recipes) on the datasets benchmark's data.

The real path, as ``batch personalize apply`` drives it: the Interactions CSV that ``batch datasets``
wrote from the generated platform database (``bench/batch_datasets.py``'s, cached in
``.data/bench/datasets-*``; written here if missing) is uploaded to moto's S3, imported by the
emulator (``devstack.personalize`` as a subprocess) with CreateDatasetImportJob, and each solution
trained with CreateSolutionVersion, polling Describe until ACTIVE. Printed per step: wall time (from
the Create call to ACTIVE as seen by polling), the emulator's own ``trainingHours``, interactions per
second, the emulator's CPU, and its resident memory; at the end its peak RSS (``VmHWM``). Always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_support import PlatformDatabase, code_version, machine_line, run_measured

from devstack.moto_server import run_moto_server as moto_server
from devstack.personalize.client import EmulatorProcess, run_emulator

if TYPE_CHECKING:
    from mypy_boto3_personalize import PersonalizeClient
    from mypy_boto3_s3 import S3Client

REGION: Final = "us-east-1"
BUCKET: Final = "bench-personalize"
ROLE: Final = "arn:aws:iam::000000000000:role/PersonalizeS3Access"
RECIPE: Final = "arn:aws:personalize:::recipe/"
OPTIONS: Final[dict[str, Any]] = {
    "region_name": REGION,
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
    "config": Config(retries={"total_max_attempts": 3, "mode": "standard"}, read_timeout=300),
}
FINAL: Final = ("ACTIVE", "CREATE FAILED", "CREATE STOPPED")


# --------------------------------------------------------------------------------------------- data


def ensure_datasets(db: PlatformDatabase) -> Path:
    folder = db.datasets_dir
    if (folder / "manifest.json").exists():
        print(f"datasets (cached): {folder.name}", flush=True)
        return folder
    db.ensure()
    print(f"batch datasets on {db.path.name} ...", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_")}
    batch = str(Path(sys.executable).with_name("batch"))
    argv = [batch, "datasets", "--out", str(folder), "--database-url", db.url, "--allow-small"]
    measured = run_measured(argv, env=env)
    if measured.returncode != 0:
        raise RuntimeError(f"batch datasets failed ({measured.returncode}): {measured.stderr[-2000:]}")
    print(f"  done in {measured.seconds:.0f} s", flush=True)
    return folder


# ------------------------------------------------------------------------------------------ processes


@dataclass
class ProcessSample:
    cpu_seconds: float
    rss_mib: float
    peak_rss_mib: float


def sample(pid: int) -> ProcessSample:
    """CPU seconds (utime + stime), resident and peak resident memory of process ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat[stat.rfind(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    rss = int(status.get("VmRSS", "0 kB").split()[0]) / 1024
    peak = int(status.get("VmHWM", "0 kB").split()[0]) / 1024
    return ProcessSample(cpu, rss, peak)


def _busy_seconds() -> float:
    parts = Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]
    values = [int(v) for v in parts]
    return (sum(values[:8]) - values[3] - (values[4] if len(values) > 4 else 0)) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- steps


@dataclass
class Step:
    name: str
    seconds: float
    emulator_cpu: float
    others_cores: float
    rss_mib: float
    training_seconds: float | None = None
    interactions: int | None = None
    status: str = "ACTIVE"
    failure: str | None = None


def wait_until_final(personalize: PersonalizeClient, kind: str, arn: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        if kind == "group":
            found: dict[str, Any] = dict(personalize.describe_dataset_group(datasetGroupArn=arn)["datasetGroup"])
        elif kind == "dataset":
            found = dict(personalize.describe_dataset(datasetArn=arn)["dataset"])
        elif kind == "import":
            found = dict(personalize.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"])
        elif kind == "solution":
            found = dict(personalize.describe_solution(solutionArn=arn)["solution"])
        else:
            found = dict(personalize.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
        if found.get("status") in FINAL:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arn} still {found.get('status')} after {timeout:.0f} s")
        time.sleep(0.1)


class Measure:
    """Wall time, the emulator's CPU and others' CPU across one step."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self) -> Measure:
        self.started = time.monotonic()
        self.busy = _busy_seconds()
        self.before = sample(self.pid)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.monotonic() - self.started
        self.after = sample(self.pid)
        self.cpu = self.after.cpu_seconds - self.before.cpu_seconds
        busy = _busy_seconds() - self.busy
        self.others = max(0.0, busy - self.cpu) / self.seconds if self.seconds > 0 else 0.0


def run(args: argparse.Namespace, workdir: Path) -> list[Step]:
    db = PlatformDatabase(args.interactions, players=args.players, games=args.games, days=args.days, seed=args.seed)
    folder = ensure_datasets(db)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    rows = int(manifest["datasets"]["interactions"]["written"])
    csv_path = folder / "interactions.csv"
    print(f"interactions.csv: {rows:,} interactions, {csv_path.stat().st_size / 2**20:,.0f} MiB", flush=True)
    steps: list[Step] = []
    with moto_server(workdir / "moto.log") as moto_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
        env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION=REGION)
        with run_emulator(
            s3_endpoint_url=moto_url, step_seconds=0.05, default_quota=0, env=env, log_level="warning"
        ) as emulator:
            steps = _flow(args, emulator, moto_url, folder, rows)
            final = sample(emulator.process.pid)
            print(f"emulator peak RSS (VmHWM): {final.peak_rss_mib:,.0f} MiB", flush=True)
            steps.append(Step("emulator peak", 0.0, final.cpu_seconds, 0.0, final.peak_rss_mib, status="peak"))
    return steps


def _flow(args: argparse.Namespace, emulator: EmulatorProcess, moto_url: str, folder: Path, rows: int) -> list[Step]:
    pid = emulator.process.pid
    s3: S3Client = boto3.client("s3", endpoint_url=moto_url, **OPTIONS)
    personalize: PersonalizeClient = boto3.client("personalize", endpoint_url=emulator.url, **OPTIONS)
    s3.create_bucket(Bucket=BUCKET)
    steps: list[Step] = []

    started = time.monotonic()
    s3.upload_file(
        str(folder / "interactions.csv"),
        BUCKET,
        "datasets/interactions.csv",
        Config=TransferConfig(multipart_chunksize=64 * 2**20, max_concurrency=2),
    )
    print(f"uploaded to moto S3 in {time.monotonic() - started:.1f} s", flush=True)

    schema = (folder / "interactions.schema.json").read_text(encoding="utf-8")
    schema_arn = personalize.create_schema(name="bench-interactions", schema=schema)["schemaArn"]
    group_arn = personalize.create_dataset_group(name="bench")["datasetGroupArn"]
    wait_until_final(personalize, "group", group_arn, 120)
    dataset_arn = personalize.create_dataset(
        name="bench-interactions", schemaArn=schema_arn, datasetGroupArn=group_arn, datasetType="Interactions"
    )["datasetArn"]
    wait_until_final(personalize, "dataset", dataset_arn, 120)
    print("import ...", flush=True)
    with Measure(pid) as m:
        job_arn = personalize.create_dataset_import_job(
            jobName="bench-import",
            datasetArn=dataset_arn,
            dataSource={"dataLocation": f"s3://{BUCKET}/datasets/interactions.csv"},
            roleArn=ROLE,
        )["datasetImportJobArn"]
        job = wait_until_final(personalize, "import", job_arn, args.timeout)
    steps.append(
        Step("import", m.seconds, m.cpu, m.others, m.after.rss_mib, interactions=rows, status=str(job["status"]))
    )
    _print(steps[-1])
    if job["status"] != "ACTIVE":
        steps[-1].failure = str(job.get("failureReason"))
        return steps

    for recipe in args.recipes:
        solution_arn = personalize.create_solution(
            name=f"bench-{recipe}", datasetGroupArn=group_arn, recipeArn=RECIPE + recipe
        )["solutionArn"]
        wait_until_final(personalize, "solution", solution_arn, 120)
        print(f"{recipe} ...", flush=True)
        with Measure(pid) as m:
            version_arn = personalize.create_solution_version(solutionArn=solution_arn)["solutionVersionArn"]
            version = wait_until_final(personalize, "version", version_arn, args.timeout)
        hours = version.get("trainingHours")
        step = Step(
            recipe,
            m.seconds,
            m.cpu,
            m.others,
            m.after.rss_mib,
            training_seconds=float(hours) * 3600 if hours is not None else None,
            interactions=rows,
            status=str(version["status"]),
            failure=version.get("failureReason"),
        )
        steps.append(step)
        _print(step)
    return steps


def _print(step: Step) -> None:
    rate = f", {step.interactions / step.seconds:,.0f} interactions/s" if step.interactions and step.seconds else ""
    inner = f" (training itself {step.training_seconds:.1f} s)" if step.training_seconds is not None else ""
    print(
        f"  {step.name}: {step.status} in {step.seconds:.1f} s{inner}{rate}; emulator CPU {step.emulator_cpu:.1f} s, "
        f"RSS {step.rss_mib:,.0f} MiB; others {step.others_cores:.2f} cores"
        + (f"; failure: {step.failure}" if step.failure else ""),
        flush=True,
    )


def report(steps: list[Step]) -> None:
    print("\n== Results")
    header = ("step", "status", "seconds", "training s", "interactions/s", "emulator CPU s", "RSS MiB", "others")
    rows = []
    for s in steps:
        if s.status == "peak":
            continue
        rows.append(
            (
                s.name,
                s.status,
                f"{s.seconds:.1f}",
                f"{s.training_seconds:.1f}" if s.training_seconds is not None else "-",
                f"{s.interactions / s.seconds:,.0f}" if s.interactions and s.seconds else "-",
                f"{s.emulator_cpu:.1f}",
                f"{s.rss_mib:,.0f}",
                f"{s.others_cores:.2f}",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)] if rows else []
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    print(" seconds: from the Create call to ACTIVE seen by polling Describe (every 0.1 s); training s: the")
    print(" emulator's trainingHours; RSS: the emulator's resident memory after the step; others: CPU cores")
    print(" other processes used meanwhile")
    for s in steps:
        if s.status == "peak":
            print(f"emulator peak RSS (VmHWM) over the run: {s.rss_mib:,.0f} MiB")
    sims = next((s for s in steps if s.name == "aws-sims"), None)
    if sims is not None and sims.status == "ACTIVE":
        print(f"SIMS training time: {sims.seconds:.1f} s ({sims.interactions or 0:,} interactions)")
    else:
        print("SIMS training time: not measured (see above)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=10_000_000, help="database size (default 10M)")
    parser.add_argument("--players", type=int, default=0, help="players (default: interactions / 25)")
    parser.add_argument("--games", type=int, default=2000)
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=["aws-sims", "aws-popularity-count", "aws-trending-now", "aws-user-personalization-v2"],
        help="recipes to train, in order (default: SIMS, popularity-count, trending-now, user-personalization-v2)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="longest wait for one step (s)")
    args = parser.parse_args(argv)
    print("Personalize emulator training benchmark")
    print(machine_line())
    print(f"code: {code_version()}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sims-"))
    try:
        report(run(args, workdir))
    except Exception as exc:  # a benchmark reports, it does not fail
        print(f"benchmark did not complete: {exc!r}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
