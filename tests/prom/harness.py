"""A real Prometheus for tests: backfilled with `promtool tsdb create-blocks-from openmetrics`, then served
on 127.0.0.1 on a free port from a temporary data directory.

    with PrometheusServer(openmetrics_text) as prom:
        prom.url  # http://127.0.0.1:<port>
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.serving import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
START_DEADLINE = 60.0


def openmetrics(families: dict[str, tuple[str, list[tuple[str, list[tuple[float, float]]]]]]) -> str:
    """OpenMetrics text from {family: (type, [(series name with labels, [(time, value), ...]), ...])}."""
    lines = []
    for family, (kind, series) in families.items():
        lines.append(f"# TYPE {family} {kind}")
        for name, samples in series:
            lines += [f"{name} {float(value)!r} {float(stamp):.3f}" for stamp, value in samples]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class PrometheusServer:
    """A Prometheus process serving backfilled data; stops and cleans up on exit."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.dir = Path(tempfile.mkdtemp(prefix="cloudpilot-prom-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        source = self.dir / "data.om"
        source.write_text(self.data)
        tsdb = self.dir / "tsdb"
        done = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"promtool backfill failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")
        config = self.dir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n")
        with (self.dir / "prometheus.log").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tsdb}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=100y",
                    "--query.lookback-delta=5m",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling interval while waiting on a deadline, not a fixed wait
        raise TimeoutError(f"prometheus not ready at {self.url} within {START_DEADLINE}s")

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a test server, killing it if it does not exit within 20 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
