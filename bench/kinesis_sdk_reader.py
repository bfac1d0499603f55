"""A plain GetRecords reader on KCL's own HTTP client: ``bench/java/SdkReader.java``.

The AWS SDK for Java v2's KinesisAsyncClient on Netty over HTTP/2 with KCL's settings, one thread per
shard, no KCL. It separates what kinesis-mock and the SDK's protocol cost (this reader's rate) from what
KCL and the worker add on top (the pipeline against it). It runs with ``java`` (a JDK: the source file
is compiled at launch) and the jars amazon-kclpy installed; round 0 warms the JVM up and the last
round is the figure, as the worker's JVM is warm in (d).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from e2e_support import ReadTarget

from stream_worker.supervisor import default_jars_dir

SOURCE = Path(__file__).resolve().parent / "java" / "SdkReader.java"


@dataclass
class SdkReadResult:
    records: int
    seconds: float
    calls: int
    rounds: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("nan")


def plain_read_sdk(
    target: ReadTarget,
    *,
    limit: int = 10_000,
    after: Mapping[str, str] | None = None,
    rounds: int = 2,
    timeout: float = 600,
) -> SdkReadResult:
    """Read what ``target.expected`` says each shard holds (after ``after[shard]``, else from TRIM_HORIZON),
    ``rounds`` times; the last round is the result. Raises RuntimeError if the reader fails."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no java on PATH")
    shards = [
        f"{shard}={count}" + (f"@{after[shard]}" if after is not None and shard in after else "")
        for shard, count in sorted(target.expected.items())
    ]
    argv = [java, "-cp", str(default_jars_dir() / "*"), str(SOURCE), target.endpoint, target.region, target.stream]
    argv += [str(limit), str(rounds)]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": target.access_key, "AWS_SECRET_ACCESS_KEY": target.secret_key}
    done = subprocess.run([*argv, *shards], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or len(lines) != rounds:
        raise RuntimeError(f"SdkReader exited {done.returncode}: {done.stderr.strip()[-800:]}")
    last = lines[-1]
    rounds_seconds = [float(x["seconds"]) for x in lines]
    return SdkReadResult(int(last["records"]), float(last["seconds"]), int(last["calls"]), rounds_seconds)
