"""The test control plane run as a program stops every process it started on SIGTERM and on SIGINT."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.controlplane import REPO, ensure_binaries


def children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                if line.startswith(prefix):
                    return line
                if not line and proc.poll() is not None:
                    break
    raise AssertionError(f"no line starting with {prefix!r}; exit code {proc.poll()}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_etcd_apiserver_controller_manager_and_scheduler(sig, tmp_path):
    env = {**os.environ, "CLOUDPILOT_KUBE_BIN": str(ensure_binaries())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.cluster.controlplane", "--nodes", "1", "--dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    started: set[int] = set()
    try:
        assert wait_for_line(proc, "export KUBECONFIG=", timeout=180)
        started = children(proc.pid)
        names = {Path(os.readlink(f"/proc/{pid}/exe")).name for pid in started}
        assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} <= names, names
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in started if alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in started:  # clean up after a failure
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
