"""Fleet fan-out: how long fleet_overview, fleet_problem_pods and fleet_diagnose take over two real control
planes when both answer, when one is stopped (connection refused) and when one never answers (a listener that
accepts and stays silent). Prints a table; the baseline is the deadline, k8s.fanout_timeout_seconds.

    python benchmarks/fleet_fanout.py [--timeout 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime import Runtime, use  # noqa: E402
from settings import Settings  # noqa: E402
from store import ClusterRecord  # noqa: E402
from tests.cluster.controlplane import ADMIN_TOKEN, ControlPlane  # noqa: E402
from tools.fleet import fleet_diagnose, fleet_overview, fleet_problem_pods  # noqa: E402

TOOLS: dict[str, Callable[..., Awaitable[Any]]] = {
    "fleet_overview": fleet_overview,
    "fleet_problem_pods": fleet_problem_pods,
    "fleet_diagnose": fleet_diagnose,
}


def register(rt: Runtime, name: str, server: str, ca: str | None = None) -> None:
    rt.store.add_cluster(
        ClusterRecord(name=name, server=server, token=ADMIN_TOKEN, ca_cert=ca, insecure_skip_tls_verify=ca is None)
    )


async def measure(rt: Runtime, clusters: list[str]) -> list[tuple[str, float, int]]:
    rows = []
    with use(rt):
        for name, fn in TOOLS.items():
            started = time.perf_counter()
            result = await fn(clusters=clusters, force_refresh=True)
            rows.append((name, time.perf_counter() - started, len(result.unreachable)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=5.0, help="k8s.fanout_timeout_seconds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cloudpilot-fleet-"))
    planes = [ControlPlane(work / name) for name in ("one", "two")]
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog) and never answers
    try:
        for cp in planes:
            cp.start(nodes=1)
        settings = Settings(
            k8s={"kubeconfig": work / "none", "fanout_timeout_seconds": args.timeout}, store={"path": work / "db"}
        )
        rt = Runtime(settings)
        for name, cp in zip(("one", "two"), planes, strict=True):
            register(rt, name, cp.url, (cp.dir / "pki" / "ca.crt").read_text())
        register(rt, "silent", f"https://127.0.0.1:{silent.getsockname()[1]}")
        cases = [("both answer", ["one", "two"])]
        rows = [(case, *row) for case, names in cases for row in asyncio.run(measure(rt, names))]
        planes[1].stop()
        rows += [("one stopped", *row) for row in asyncio.run(measure(rt, ["one", "two"]))]
        rows += [("one silent", *row) for row in asyncio.run(measure(rt, ["one", "silent"]))]
        rt.close()
    finally:
        silent.close()
        for cp in planes:
            cp.stop()
    print(f"deadline (k8s.fanout_timeout_seconds): {args.timeout:g} s\n")
    print(f"{'case':<14} {'tool':<20} {'seconds':>8} {'not answered':>13}")
    for case, tool, seconds, missing in rows:
        print(f"{case:<14} {tool:<20} {seconds:>8.3f} {missing:>13}")


if __name__ == "__main__":
    main()
