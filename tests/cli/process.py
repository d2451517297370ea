"""`server.py` as a real process for the CLI tests: started without the test run's CLOUDPILOT_* variables, and
waited for until its /healthz answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def start(*args: str, **popen: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPILOT_")}
    return subprocess.Popen([sys.executable, str(ROOT / "server.py"), *args], cwd=ROOT, env=env, **popen)


def wait_healthy(proc: subprocess.Popen[bytes], base: str, what: str, timeout: float = 30.0) -> None:
    """Until `base`/healthz answers 200; fails when the process exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.1)
