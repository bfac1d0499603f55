"""The CronJob's script (``sh -c``, PID 1 in the pod) passes SIGTERM on to the running ``batch`` step, so
that its ``finally`` blocks run (staged uploads aborted), and stops there with 143."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.unit.test_deploy_manifests import batch_script


def test_sigterm_reaches_the_running_step_and_no_later_step_runs(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    ready = tmp_path / "ready"
    fake = tmp_path / "bin" / "batch"
    fake.parent.mkdir()
    # Logs its arguments, then runs until SIGTERM, which it logs.
    fake.write_text(
        '#!/bin/sh\necho "$*" >> "$CALLS"\ntrap \'echo "TERM $*" >> "$CALLS"; exit 143\' TERM\n'
        'touch "$READY"\nwhile :; do sleep 0.05; done\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "CALLS": str(log), "READY": str(ready)}
    script = subprocess.Popen(
        ["/bin/sh", "-c", batch_script()], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline, "the first step never started"
            time.sleep(0.02)
        script.send_signal(signal.SIGTERM)
        status = script.wait(timeout=10)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
    assert status == 143, script.stderr.read() if script.stderr else ""
    assert log.read_text(encoding="utf-8").splitlines() == ["datasets", "TERM datasets"], "the step got SIGTERM"
