"""The fix loop on the seed scenarios: how many are fixed and verified with the plan as made (no human edits),
how long from the diagnosis finding to the verified fix, and whether anything changed outside the plan.

    .venv/bin/python -m benchmarks.fix_scenarios [--runs 3]

Starts its own control plane (`tests.cluster.controlplane`, 3 fake nodes) and, per run, builds each scenario
of `tests/fix/scenarios.py` in its own namespace. Then, as an operator's client would: `diagnose` focused on
Deployment `web` (the finding), `fix_plan` with the scenario's event text, `fix_apply` with the plan id as
confirmation, while a stand-in kubelet marks the new revision's pods Ready. A scenario counts as fixed
without human edits when the plan addresses the expected findings with the expected actions, fix_apply
verifies it, and the Deployment then passes the scenario's check. "Outside the plan" compares the
Deployment after the fix with the server's dry-run result the plan's diff was made from, and counts audit
records of objects the plan did not name.

Then the 62 labelled diagnosis scenarios (`tests/tools/diagnosis_scenarios.py`), each judged against
`tests/fix/expectations.py`: how many end in a verified fix (the expected actions, applied with confirmation,
verified), how many in a correct refusal (nothing planned where the right value is the owner's to choose).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from errors import CloudPilotError  # noqa: E402
from runtime import Runtime, use  # noqa: E402
from settings import Settings  # noqa: E402
from store import AuditLog  # noqa: E402
from tests.cluster.controlplane import ControlPlane  # noqa: E402
from tests.fix.expectations import EXPECTED  # noqa: E402
from tests.fix.scenarios import SCENARIOS, Scenario, deployment, kubelet  # noqa: E402
from tests.tools.diagnosis_scenarios import Kube, install_mesh  # noqa: E402
from tests.tools.scenarios import ALL as LABELLED  # noqa: E402
from tools.diagnose import diagnose  # noqa: E402
from tools.fix import fix_apply, fix_plan  # noqa: E402
from tools.fixloop import content, load  # noqa: E402


async def run_one(cp: ControlPlane, rt: Runtime, scenario: Scenario, ns: str) -> dict[str, object]:
    cp.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    scenario.build(cp.api, ns)
    with use(rt):
        diagnosis = await diagnose(namespace=ns, kind="Deployment", name="web", force_refresh=True)
        found = {f.code for f in diagnosis.findings}
        t_finding = time.monotonic()
        plan = await fix_plan(namespace=ns, name="web", event_text=scenario.event_text)
        t_plan = time.monotonic()
        actions = [a for c in plan.changes for a in c.actions]
        addressed = {w.split(":")[0] for c in plan.changes for w in c.why}
        as_expected = len(plan.changes) == 1 and actions == scenario.actions and scenario.codes <= addressed
        with kubelet(cp.api, ns, "ready"):
            result = await fix_apply(plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=60)
        t_done = time.monotonic()
    after = deployment(cp.api, ns)
    _, saved = load(rt, plan.plan_id)
    # verified: the object must be exactly the dry-run result; rolled back: exactly what it was before
    desired = (saved.items[0].desired if result.status == "verified" else saved.items[0].live) if saved.items else None
    planned = {i.label for i in saved.items}
    applied = [e for e in AuditLog(rt.store).entries(plan_id=plan.plan_id) if e.event == "applied"]
    outside = int(content(after) != content(desired)) + sum(1 for e in applied if e.object not in planned)
    return {
        "scenario": scenario.name,
        "finding": ",".join(sorted(found & scenario.codes)) or "-",
        "actions": "+".join(actions) or "-",
        "status": result.status,
        "ok": scenario.codes <= found and as_expected and result.status == "verified" and scenario.fixed(after),
        "outside": outside,
        "plan_s": t_plan - t_finding,
        "to_verified_s": t_done - t_finding,
    }


async def main_async(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(Path(tmp) / "cp") as cp:
        settings = Settings(
            k8s={"kubeconfig": cp.kubeconfig, "context": None, "cache_ttl_seconds": 0},
            store={"path": Path(tmp) / "cloudpilot.db"},
            safety={"allow_write": True},
        )
        rt = Runtime(settings)
        rows = []
        try:
            for run in range(runs):
                for s in SCENARIOS:
                    rows.append(await run_one(cp, rt, s, f"fx-{s.name}-{run}"))
        finally:
            rt.close()
    print(
        f"{'scenario':<26}{'finding':<40}{'plan':<26}{'result':<10}{'ok':<5}{'outside':<9}"
        f"{'plan s':>8}{'finding→verified s':>20}"
    )
    for r in rows:
        print(
            f"{r['scenario']:<26}{r['finding']:<40}{r['actions']:<26}{r['status']:<10}"
            f"{'yes' if r['ok'] else 'NO':<5}{r['outside']:<9}{r['plan_s']:>8.2f}{r['to_verified_s']:>20.2f}"
        )
    ok = sum(1 for r in rows if r["ok"])
    times = [float(r["to_verified_s"]) for r in rows]  # type: ignore[arg-type]
    print(f"\nfixed and verified without human edits to the plan: {ok}/{len(rows)} ({ok / len(rows):.0%})")
    print(
        f"finding → verified fix: median {statistics.median(times):.2f} s, max {max(times):.2f} s "
        f"({len(SCENARIOS)} scenarios × {runs} run(s))"
    )
    print(f"changes applied outside the plan: {sum(int(r['outside']) for r in rows)}")  # type: ignore[call-overload]


async def labelled(cp: ControlPlane, rt: Runtime, scenario: Any, ns: str) -> tuple[str, str, str]:
    """One labelled diagnosis scenario through fix_plan (and fix_apply with confirmation when it plans):
    (outcome, planned actions, detail). Outcomes: verified fix, correct refusal, wrong plan, wrong refusal,
    failed verification."""
    expected = EXPECTED[scenario.name]
    with use(rt):
        try:
            plan = await fix_plan(namespace=ns)
        except CloudPilotError as e:
            return ("correct refusal" if expected is None else "wrong refusal"), "-", e.message[:60]
        actions = tuple(sorted({a for c in plan.changes for a in c.actions}))
        if not actions:
            reason = plan.refused[0].reason[:60] if plan.refused else "-"
            return ("correct refusal" if expected is None else "wrong refusal"), "-", reason
        if expected is None or set(actions) != set(expected):
            return "wrong plan", "+".join(actions), f"expected {expected}"
        with kubelet(cp.api, ns, "ready"):
            result = await fix_apply(plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=60)
    outcome = "verified fix" if result.status == "verified" else "failed verification"
    return outcome, "+".join(actions), result.status


async def labelled_async() -> None:
    """All 62 labelled diagnosis scenarios, each in its own namespace of a fresh control plane."""
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(Path(tmp) / "cp") as cp:
        kube = Kube(cp.api, cp)
        install_mesh(kube)
        spaces = {s.name: f"lb-{s.name}" for s in LABELLED}

        def make(scenario: Any) -> None:
            kube.create("/api/v1/namespaces", {"metadata": {"name": spaces[scenario.name]}})
            scenario.build(kube, spaces[scenario.name], True)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(make, LABELLED))
        settings = Settings(
            k8s={"kubeconfig": cp.kubeconfig, "context": None, "cache_ttl_seconds": 0},
            store={"path": Path(tmp) / "labelled.db"},
            safety={"allow_write": True},
        )
        rt = Runtime(settings)
        rows = []
        try:
            for scenario in LABELLED:
                rows.append((scenario.name, *await labelled(cp, rt, scenario, spaces[scenario.name])))
        finally:
            rt.close()
    print(f"\n{'labelled scenario':<26}{'outcome':<22}{'plan':<18}detail")
    for name, outcome, actions, detail in rows:
        print(f"{name:<26}{outcome:<22}{actions:<18}{detail}")
    counts = Counter(r[1] for r in rows)
    print(
        f"\n{len(rows)} labelled scenarios: {counts['verified fix']} end in a verified fix, "
        f"{counts['correct refusal']} in a correct refusal; wrong plan {counts['wrong plan']}, wrong refusal "
        f"{counts['wrong refusal']}, failed verification {counts['failed verification']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="times each seed scenario is built and fixed")
    parser.add_argument("--labelled-only", action="store_true", help="only the 62 labelled diagnosis scenarios")
    args = parser.parse_args()
    if not args.labelled_only:
        asyncio.run(main_async(args.runs))
    asyncio.run(labelled_async())


if __name__ == "__main__":
    main()
