"""Scenario benchmark of the diagnosis engine on a real control plane it starts itself.

Builds healthy noise (namespaces of Deployments + Services whose pods are Running and Ready, ~5,000 pods by
default), each labelled scenario of `tests/tools/scenarios/` in its own namespace (one root cause each), and
the trap namespaces of `tests/tools/diagnosis_traps.py` (healthy, but full of things that look suspicious).
Prints, per scenario, the expected code and the top finding of `diagnose(namespace=...)`; precision and recall
of the top finding for the first 62 scenarios and for the ones added from the coverage tables, separately;
findings above info on the traps and on the noise (target: none); and the time of an all-namespace diagnosis:
cold (new runtime), re-read (force_refresh on a warm connection) and warm (cached snapshot).

    .venv/bin/python benchmarks/diagnosis_scenarios.py [--pods 5000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime import Runtime, use
from settings import Settings
from tests.cluster.controlplane import ControlPlane
from tests.tools.diagnosis_scenarios import Kube, Scenario, install_mesh, running_status, wait_for
from tests.tools.diagnosis_traps import TRAPS
from tests.tools.scenarios import ALL as SCENARIOS
from tests.tools.scenarios import NEW, OLD
from tools.diagnose import diagnose

DEPLOYMENTS_PER_NAMESPACE = 5
REPLICAS = 20
PODS_PER_NODE = 250
THREADS = 10  # the control plane helper's connection pool size


def build_noise(cp: ControlPlane, kube: Kube, pods: int) -> list[str]:
    per_ns = DEPLOYMENTS_PER_NAMESPACE * REPLICAS
    namespaces = [f"noise-{i:03d}" for i in range(max(1, pods // per_ns))]
    with ThreadPoolExecutor(THREADS) as pool:
        list(
            pool.map(
                lambda i: cp.add_node(f"pool-{i:02d}", cpu="32", memory="128Gi", pods=str(PODS_PER_NODE)),
                range(pods // PODS_PER_NODE + 2),
            )
        )

        def make(ns: str) -> None:
            kube.create("/api/v1/namespaces", {"metadata": {"name": ns, "labels": {"noise": "true"}}})
            for d in range(DEPLOYMENTS_PER_NAMESPACE):
                name = f"app-{d}"
                kube.deploy(
                    ns,
                    name,
                    replicas=REPLICAS,
                    wait=False,
                    container={"readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}},
                )
                kube.service(ns, name)

        list(pool.map(make, namespaces))
        total = len(namespaces) * per_ns

        def scheduled() -> list[dict[str, Any]] | None:
            items = cp.api("GET", "/api/v1/pods?labelSelector=app")["items"]
            mine = [p for p in items if p["metadata"]["namespace"].startswith("noise-") and p["spec"].get("nodeName")]
            return mine if len(mine) >= total else None

        noise_pods = wait_for(scheduled, f"{total} noise pods scheduled", timeout=600)
        list(
            pool.map(
                lambda p: kube.set_pod_status(p["metadata"]["namespace"], p["metadata"]["name"], running_status(p)),
                noise_pods,
            )
        )

    def available() -> bool:
        items = cp.api("GET", "/apis/apps/v1/deployments")["items"]
        return all(
            d["status"].get("availableReplicas", 0) >= REPLICAS
            for d in items
            if d["metadata"]["namespace"].startswith("noise-")
        )

    wait_for(available, "noise deployments available", timeout=600)
    return namespaces


def build_scenarios(cp: ControlPlane, kube: Kube) -> dict[str, str]:
    """Scenario or trap name → namespace."""
    spaces = {s.name: f"sc-{s.name}" for s in SCENARIOS} | {t.name: f"tp-{t.name}" for t in TRAPS}

    def make(item: Any) -> None:
        ns = spaces[item.name]
        kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
        if isinstance(item, Scenario):
            item.build(kube, ns, True)
        else:
            item.build(kube, ns)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(make, [*SCENARIOS, *TRAPS]))
    return spaces


def correct(scenario: Scenario, top: Any) -> bool:
    return bool(
        top
        and top.code == scenario.code
        and (not scenario.summary_has or scenario.summary_has in top.summary)
        and (not scenario.subject or top.object.kind == scenario.subject)
    )


def made_by_a_scenario(f: Any) -> bool:
    """A cluster-level finding a scenario caused: its object, chain or involved objects are the scenario's
    (nodes n-sc-*, PVs pv-sc-*, classes sc-*-..., namespaces sc-*/tp-*)."""
    return any(
        (o.namespace or "").startswith(("sc-", "tp-")) or "sc-" in o.name or "tp-" in o.name
        for o in [f.object, *f.chain, *f.involves]
    )


def scores(rows: list[tuple[str, str, str, str, str]], names: set[str]) -> str:
    mine = [r for r in rows if r[0] in names]
    answered = sum(r[2] != "-" for r in mine)
    right = sum(r[3] == "yes" for r in mine)
    return (
        f"{len(mine)} scenarios: precision (top finding) {right / max(answered, 1):.2f}, "
        f"recall {right / max(len(mine), 1):.2f}"
    )


async def timed(rt: Runtime, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    with use(rt):
        result = await diagnose(**kwargs)
    return time.perf_counter() - start, result


async def measure(settings: Settings, spaces: dict[str, str], runs: int) -> None:
    rt = Runtime(settings)
    try:
        cold, full = await timed(rt, limit=5000)
        refresh = [(await timed(rt, limit=5000, force_refresh=True))[0] for _ in range(runs)]
        warm = [(await timed(rt, limit=5000))[0] for _ in range(runs)]
        pods = full.checked.get("pods", 0)
        rows = []
        for scenario in SCENARIOS:
            _, result = await timed(rt, namespace=spaces[scenario.name], force_refresh=True)
            top = result.findings[0] if result.findings else None
            ok = correct(scenario, top)
            rows.append(
                (
                    scenario.name,
                    scenario.code,
                    top.code if top else "-",
                    "yes" if ok else "NO",
                    (top.summary[:60] if top else ""),
                )
            )
        traps = []
        for trap in TRAPS:
            _, result = await timed(rt, namespace=spaces[trap.name], force_refresh=True)
            traps += [(trap.name, f) for f in result.findings if f.severity != "info"]
        noise = [f for f in full.findings if (f.object.namespace or "").startswith("noise-")]
        cluster_level = [f for f in full.findings if f.object.namespace is None and not made_by_a_scenario(f)]
    finally:
        rt.close()

    width = max(len(r[0]) for r in rows)
    print(f"{'scenario':<{width}}  {'expected':<28}  {'top finding':<28}  ok   summary")
    for name, expected, got, ok, summary in rows:
        print(f"{name:<{width}}  {expected:<28}  {got:<28}  {ok:<4} {summary}")
    print()
    print(f"first scenarios: {scores(rows, {s.name for s in OLD})}")
    print(f"coverage scenarios (issue 15): {scores(rows, {s.name for s in NEW})}")
    print(f"all: {scores(rows, {s.name for s in SCENARIOS})}")
    print(
        f"findings above info on {len(TRAPS)} trap namespaces: {len(traps)}"
        + "".join(f"\n  {name}: {f.severity} {f.code} {f.object.short()}: {f.summary}" for name, f in traps)
    )
    print(
        f"findings on healthy noise: {len(noise)} in noise namespaces, {len(cluster_level)} cluster-level"
        + "".join(f"\n  {f.severity} {f.code} {f.object.short()}: {f.summary}" for f in noise + cluster_level)
    )
    print(f"all-namespace diagnosis of {pods} pods ({len(full.findings)} findings):")
    print(f"  cold (new runtime: discovery, lists, rules)   {cold:6.2f} s")
    print(f"  re-read (force_refresh, warm connection)      {statistics.median(refresh):6.2f} s  (median of {runs})")
    print(f"  warm (cached snapshot, rules only)            {statistics.median(warm):6.2f} s  (median of {runs})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000, help="healthy noise pods (default 5000)")
    parser.add_argument("--runs", type=int, default=3, help="timed repetitions (default 3)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cloudpilot-bench-"))
    started = time.perf_counter()
    with ControlPlane(work / "cp") as cp:
        kube = Kube(cp.api, cp)
        install_mesh(kube)
        build_noise(cp, kube, args.pods)
        spaces = build_scenarios(cp, kube)
        print(
            f"(cluster built in {time.perf_counter() - started:.0f} s: {args.pods} noise pods, "
            f"{len(SCENARIOS)} scenarios, {len(TRAPS)} traps)\n"
        )
        settings = Settings(k8s={"kubeconfig": cp.kubeconfig, "context": None}, store={"path": work / "db.sqlite"})
        asyncio.run(measure(settings, spaces, args.runs))


if __name__ == "__main__":
    main()
