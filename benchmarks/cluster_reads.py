"""Cluster reads at scale: CloudPilot's overview and all-pods answer against the raw API, kubectl, and
kubernetes-mcp-server, on one control plane seeded with 100 nodes and 5,000 pods. Prints a table.

    python benchmarks/cluster_reads.py [--runs 5] [--kubeconfig FILE]   # FILE: use an already seeded cluster

Seed: 50 namespaces × 100 pods (about 5 % in CrashLoopBackOff, ImagePullBackOff, OOMKilled or Pending),
200 deployments (0 replicas), 300 services, 500 configmaps. Tokens are approximated as characters / 4
(no tokenizer can be downloaded here); bytes are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from runtime import Runtime, use  # noqa: E402
from settings import Settings  # noqa: E402
from tests.cluster.controlplane import ControlPlane  # noqa: E402
from tools import overview, pods  # noqa: E402

NAMESPACES, PODS_PER_NS = 50, 100
BAD = {7: "CrashLoopBackOff", 13: "ImagePullBackOff", 29: "OOMKilled", 41: "Pending", 53: "CrashLoopBackOff"}


def seed(cp: ControlPlane) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i in range(3, 100):
        cp.add_node(f"node-{i}", cpu="16", memory="64Gi")
    jobs: list[tuple[str, str, Any, str]] = []
    for n in range(NAMESPACES):
        ns = f"team-{n:02d}"
        cp.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    with concurrent.futures.ThreadPoolExecutor(32) as pool:

        def post(path: str, body: dict[str, Any]) -> None:
            cp.api("POST", path, body)

        for n in range(NAMESPACES):
            ns = f"team-{n:02d}"
            for d in range(4):
                jobs.append(
                    (
                        "POST",
                        f"/apis/apps/v1/namespaces/{ns}/deployments",
                        {
                            "metadata": {"name": f"app-{d}"},
                            "spec": {
                                "replicas": 0,
                                "selector": {"matchLabels": {"app": f"a{d}"}},
                                "template": {
                                    "metadata": {"labels": {"app": f"a{d}"}},
                                    "spec": {"containers": [{"name": "c", "image": "x"}]},
                                },
                            },
                        },
                        "application/json",
                    )
                )
            for s in range(6):
                jobs.append(
                    (
                        "POST",
                        f"/api/v1/namespaces/{ns}/services",
                        {"metadata": {"name": f"svc-{s}"}, "spec": {"ports": [{"port": 80}]}},
                        "application/json",
                    )
                )
            for c in range(10):
                jobs.append(
                    (
                        "POST",
                        f"/api/v1/namespaces/{ns}/configmaps",
                        {"metadata": {"name": f"cm-{c}"}, "data": {"k": "v" * 100}},
                        "application/json",
                    )
                )
            for p in range(PODS_PER_NS):
                jobs.append(("POST", f"/api/v1/namespaces/{ns}/pods", _pod(p, n), "application/json"))
        list(pool.map(lambda j: post(j[1], j[2]), jobs))

        def status(args: tuple[int, int]) -> None:
            n, p = args
            cp.api(
                "PATCH",
                f"/api/v1/namespaces/team-{n:02d}/pods/web-{p:03d}/status",
                {"status": _status(p, now)},
                content_type="application/merge-patch+json",
            )

        list(pool.map(status, [(n, p) for n in range(NAMESPACES) for p in range(PODS_PER_NS)]))


def _pod(p: int, n: int) -> dict[str, Any]:
    res = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    return {
        "metadata": {"name": f"web-{p:03d}", "labels": {"app": "web", "shard": str(p % 10)}},
        "spec": {
            "nodeName": f"node-{(n * PODS_PER_NS + p) % 97 + 3}",
            "containers": [
                {
                    "name": "app",
                    "image": "shop/web:1.4.2",
                    "resources": res,
                    "env": [{"name": "MODE", "value": "prod"}],
                },
                {"name": "proxy", "image": "envoy:1.30", "resources": res},
            ],
        },
    }


def _status(p: int, now: str) -> dict[str, Any]:
    bad = BAD.get(p)
    run = {"running": {"startedAt": now}}
    main: dict[str, Any] = {
        "name": "app",
        "image": "shop/web:1.4.2",
        "imageID": "",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": run,
    }
    if bad == "CrashLoopBackOff":
        main |= {
            "ready": False,
            "restartCount": 12,
            "state": {"waiting": {"reason": bad}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
        }
    elif bad == "OOMKilled":
        main |= {"ready": False, "restartCount": 3, "state": {"terminated": {"reason": bad, "exitCode": 137}}}
    elif bad in ("ImagePullBackOff", "Pending"):
        main |= {
            "ready": False,
            "started": False,
            "state": {"waiting": {"reason": bad if bad != "Pending" else "ContainerCreating"}},
        }
    proxy = {
        "name": "proxy",
        "image": "envoy:1.30",
        "imageID": "",
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": run,
    }
    phase = "Pending" if bad in ("ImagePullBackOff", "Pending") else "Running"
    return {
        "phase": phase,
        "podIP": f"10.1.{p // 250}.{p % 250}",
        "startTime": now,
        "containerStatuses": [main, proxy],
        "conditions": [{"type": "Ready", "status": "True" if not bad else "False"}],
    }


def timed(fn: Any, runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def raw_lists(rt: Runtime) -> int:
    """The baseline: every list the overview needs, full and raw (no model decoding), concurrently."""
    conn = rt.connection(None)
    paths = [
        "/api/v1/pods",
        "/api/v1/nodes",
        "/apis/apps/v1/deployments",
        "/api/v1/services",
        "/api/v1/configmaps",
        "/api/v1/secrets",
        "/api/v1/namespaces",
    ]
    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        return sum(len(b) for b in pool.map(lambda p: conn.request("GET", p, raw=True), paths))


async def kmcp_pods_list(binary: str, kubeconfig: str) -> tuple[float, int]:
    params = StdioServerParameters(
        command=binary, args=["--kubeconfig", kubeconfig, "--read-only"], env={**os.environ, "KUBECONFIG": kubeconfig}
    )
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        t = time.perf_counter()
        res = await s.call_tool("pods_list", {})
        elapsed = time.perf_counter() - t
    return elapsed, sum(len(c.text.encode()) for c in res.content if hasattr(c, "text"))


def find_kmcp() -> str | None:
    """kubernetes-mcp-server where .ci or a developer put it (npm i kubernetes-mcp-server-linux-amd64 --prefix
    ~/.cache/cloudpilot/kmcp), else on PATH."""
    root = Path.home() / ".cache" / "cloudpilot" / "kmcp" / "node_modules"
    hits = sorted(root.glob("kubernetes-mcp-server-linux-amd64/bin/*")) if root.exists() else []
    return str(hits[0]) if hits else shutil.which("kubernetes-mcp-server")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--kubeconfig", type=Path, help="an already seeded cluster")
    args = ap.parse_args()
    cp = None
    if args.kubeconfig:
        kubeconfig = args.kubeconfig
    else:
        t = time.perf_counter()
        cp = ControlPlane().start(nodes=3)
        seed(cp)
        kubeconfig = cp.kubeconfig
        print(f"seeded 100 nodes, {NAMESPACES * PODS_PER_NS} pods in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    try:
        report(kubeconfig, args.runs)
    finally:
        if cp:
            cp.stop()


def report(kubeconfig: Path, runs: int) -> None:
    settings = Settings(k8s={"kubeconfig": kubeconfig}, store={"path": Path("/tmp/cloudpilot-bench.db")})
    rt = Runtime(settings)
    rows: list[tuple[str, float, int | None]] = []
    with use(rt):
        t_raw, raw_bytes = timed(lambda: raw_lists(rt), runs)
        rows.append(("raw concurrent list calls the overview needs (baseline)", t_raw, raw_bytes))
        loop = asyncio.new_event_loop()
        t_cold, ov = timed(lambda: loop.run_until_complete(overview.cluster_overview(force_refresh=True)), runs)
        rows.append(("cloudpilot cluster_overview, cold", t_cold, len(ov.render().encode())))
        t_warm, _ = timed(lambda: loop.run_until_complete(overview.cluster_overview()), max(runs, 20))
        rows.append(("cloudpilot cluster_overview, warm", t_warm, None))
        t_p, triage = timed(lambda: loop.run_until_complete(pods.pods_list()), runs)
        rows.append(("cloudpilot pods_list, all namespaces (default triage page)", t_p, len(triage.render().encode())))
        t_all, full = timed(lambda: loop.run_until_complete(pods.pods_list(limit=5000)), runs)
        rows.append(
            ("cloudpilot pods_list, all namespaces, every pod (limit=5000)", t_all, len(full.render().encode()))
        )
    kubectl = shutil.which("kubectl", path=str(Path.home() / ".cache/cloudpilot/kube/v1.35.8/bin")) or shutil.which(
        "kubectl"
    )
    if kubectl:
        for extra, label in (([], "kubectl get pods -A"), (["-o", "json"], "kubectl get pods -A -o json")):
            t, out = timed(
                lambda e=extra: (
                    subprocess.run(
                        [kubectl, "--kubeconfig", str(kubeconfig), "get", "pods", "-A", *e],
                        capture_output=True,
                        check=True,
                    ).stdout
                ),
                runs,
            )
            rows.append((label, t, len(out)))
    kmcp = find_kmcp()
    if kmcp:
        samples = [asyncio.run(kmcp_pods_list(kmcp, str(kubeconfig))) for _ in range(runs)]
        rows.append(
            ("kubernetes-mcp-server pods_list over stdio", statistics.median(s[0] for s in samples), samples[-1][1])
        )
    else:
        rows.append(
            ("kubernetes-mcp-server: not installed (npm i kubernetes-mcp-server-linux-amd64)", float("nan"), None)
        )
    print(f"\nmedian of {runs} runs; {ov.pods.total} pods, {ov.nodes.total} nodes, {ov.pods.unhealthy} unhealthy\n")
    print(f"{'what':<66} {'seconds':>9} {'bytes':>12} {'~tokens':>9}")
    for label, secs, size in rows:
        print(
            f"{label:<66} {secs:>9.4f} {size if size is not None else '-':>12} "
            f"{(size // 4) if size is not None else '-':>9}"
        )
    print(
        f"\ncold overview / raw lists: {t_cold / t_raw:.2f}x (target <= 1.5x); warm overview {t_warm * 1000:.3f} ms "
        f"(target < 5 ms)"
    )
    if kmcp:
        kb = samples[-1][1]
        print(
            f"all-pods answer vs kubernetes-mcp-server: every pod {kb / len(full.render().encode()):.1f}x smaller, "
            f"triage page {kb / len(triage.render().encode()):.0f}x smaller (target >= 3x)"
        )
    rt.close()


if __name__ == "__main__":
    main()
