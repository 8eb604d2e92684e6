"""scripts/studies.sh: stopping the script stops every process of its sweep (the joblib workers of
a Hydra multirun outlive their killed parent otherwise and go on training)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# stands in for `mtl-bench`: starts a worker that would run for a minute, records its pid, waits
FAKE = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
open(sys.argv[1], "w").write(str(worker.pid))
worker.wait()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")  # a zombie has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pgrep and /proc")
def test_sigterm_to_the_script_stops_the_sweeps_workers(tmp_path):
    fake, pid_file = tmp_path / "fake.py", tmp_path / "worker.pid"
    fake.write_text(FAKE)
    env = {**os.environ, "MTL_BENCH": f"{sys.executable} {fake} {pid_file}", "RESULTS": str(tmp_path / "results")}
    script = subprocess.Popen(["bash", str(ROOT / "scripts" / "studies.sh"), "gradnorm_toy"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline and script.poll() is None, script.stdout.read() if script.poll() is not None else "slow"
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    assert alive(worker)
    script.send_signal(signal.SIGTERM)
    assert script.wait(timeout=30) == 143
    deadline = time.time() + 10
    while alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(worker), "the sweep's worker outlived the stopped script"
