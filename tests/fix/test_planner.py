"""The remediation planner's rules on plain data: evidence in, concrete changes (or refusals) out."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engines.diagnosis.model import Finding, Fix, ObjectRef
from engines.remediation import Change, Context, Edit, EditError, apply_edits, make_plan
from engines.remediation.blast import assess
from engines.remediation.describe import codes_for_text

WEB = ObjectRef(kind="Deployment", name="web", namespace="shop")
POD = ObjectRef(kind="Pod", name="web-5d9c7-abcde", namespace="shop")


def deployment(container: dict | None = None, replicas: int = 4, **spec) -> dict:
    c = {"name": "app", "image": "shop/web:2.0", "ports": [{"containerPort": 8080}], **(container or {})}
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u1",
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c]}},
            **spec,
        },
        "status": {"availableReplicas": replicas},
    }


def node(name: str, cpu: str, memory: str, taint: bool = False) -> dict:
    spec = {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]} if taint else {}
    return {"metadata": {"name": name}, "spec": spec, "status": {"allocatable": {"cpu": cpu, "memory": memory}}}


def finding(
    code: str, action: str | None = None, container: str | None = "app", severity: str = "critical", **params
) -> Finding:
    fix = Fix(action=action, target=WEB, container=container, params=params) if action else None
    return Finding(
        code=code,
        severity=severity,
        object=POD,
        summary=f"{code} summary",
        fix=fix,
        evidence={"container": "app"},
        remediation=f"{code} remediation",
    )


def ctx(dep: dict, **kw) -> Context:
    return Context(objects={("Deployment", "shop", "web"): dep}, now="2026-11-22T00:00:00+00:00", **kw)


def only_change(plan) -> Change:
    assert len(plan.changes) == 1, plan
    return plan.changes[0]


def test_bad_probe_target_becomes_a_tcp_check_on_an_exposed_port() -> None:
    f = finding("POD_PROBE_BAD_TARGET", "set_probe", probe="liveness", handler={"tcpSocket": {"port": 8080}})
    dep = deployment({"livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}})
    change = only_change(make_plan([f], ctx(dep)))
    after = apply_edits(dep, change.edits)["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert after == {"tcpSocket": {"port": 8080}}


def test_probe_port_the_container_does_not_declare_is_never_used() -> None:
    f = finding("POD_PROBE_BAD_TARGET", "set_probe", probe="liveness", handler={"tcpSocket": {"port": 9999}})
    plan = make_plan([f], ctx(deployment({"livenessProbe": {"httpGet": {"path": "/", "port": 9999}}})))
    assert plan.changes == [] and "declares no port" in plan.refused[0].reason


def test_aggressive_probe_gets_sane_timing() -> None:
    sane = {"periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3, "initialDelaySeconds": 0}
    f = finding("POD_PROBE_AGGRESSIVE", "set_probe", probe="readiness", timing=sane)
    dep = deployment({"readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}})
    change = only_change(make_plan([f], ctx(dep)))
    probe = apply_edits(dep, change.edits)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe == {"httpGet": {"path": "/ready", "port": 8080}, **sane}


def test_pending_requests_are_cut_to_fit_the_largest_schedulable_node() -> None:
    f = finding("POD_INSUFFICIENT_RESOURCES", "set_resources", requests={"cpu": "30", "memory": "20Gi"})
    nodes = [node("big-but-tainted", "64", "256Gi", taint=True), node("n1", "4", "16Gi"), node("n2", "8", "8Gi")]
    change = only_change(make_plan([f], ctx(deployment(), nodes=nodes)))
    assert change.edits[0].params == {"requests": {"cpu": "7200m", "memory": "14720Mi"}}
    assert change.evidence["POD_INSUFFICIENT_RESOURCES"]["largest_node_allocatable"] == {"cpu": "8", "memory": "16Gi"}


def test_pending_requests_fit_the_free_room_when_node_usage_is_known() -> None:
    f = finding("POD_INSUFFICIENT_RESOURCES", "set_resources", requests={"cpu": "30"})
    nodes = [node("n1", "4", "16Gi"), node("n2", "8", "8Gi")]
    used = {"n1": {"cpu": Decimal("1")}, "n2": {"cpu": Decimal("7.5")}}
    change = only_change(make_plan([f], ctx(deployment(), nodes=nodes, node_requests=used)))
    assert change.edits[0].params == {"requests": {"cpu": "2700m"}}  # n1: 3 cores free, 90% of that
    full = {"n1": {"cpu": Decimal("4")}, "n2": {"cpu": Decimal("8")}}
    plan = make_plan([f], ctx(deployment(), nodes=nodes, node_requests=full))
    assert plan.changes == [] and "no node has cpu to spare" in plan.refused[0].reason


def test_oom_limit_from_observed_usage_else_a_bounded_factor() -> None:
    f = finding("POD_OOMKILLED", "set_resources", limits={"memory": "256Mi"})
    dep = deployment({"resources": {"limits": {"memory": "128Mi"}}})
    peak = {("shop", "web", "app"): Decimal(300 * 2**20)}
    assert only_change(make_plan([f], ctx(dep, memory_peak=peak))).edits[0].params == {"limits": {"memory": "512Mi"}}
    assert only_change(make_plan([f], ctx(dep))).edits[0].params == {"limits": {"memory": "256Mi"}}
    big = deployment({"resources": {"limits": {"memory": "6Gi"}}})
    assert only_change(make_plan([f], ctx(big))).edits[0].params == {"limits": {"memory": "8Gi"}}  # +2Gi at most
    capped = only_change(make_plan([f], ctx(big, nodes=[node("n1", "4", "7Gi")])))
    assert capped.edits[0].params == {"limits": {"memory": "6400Mi"}}  # 90% of the largest node


def test_oom_without_a_limit_is_not_guessed() -> None:
    plan = make_plan([finding("POD_OOMKILLED", "set_resources", limits={"memory": "1Gi"})], ctx(deployment()))
    assert plan.changes == [] and "no memory limit" in plan.refused[0].reason


def _rs(revision: int, image: str) -> dict:
    return {
        "metadata": {
            "name": f"web-{revision}",
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"uid": "u1", "kind": "Deployment", "name": "web"}],
        },
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": f"h{revision}"}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]},
            }
        },
    }


def test_bad_rollout_rolls_back_to_the_previous_revision_template() -> None:
    f = finding("POD_IMAGE_NOT_FOUND", "rollout_undo", container=None, to_revision=1)
    dep = deployment({"image": "shop/web:2.0-typo"})
    change = only_change(make_plan([f], ctx(dep, replicasets=[_rs(1, "shop/web:1.0"), _rs(2, "shop/web:2.0-typo")])))
    after = apply_edits(dep, change.edits)["spec"]["template"]
    assert after["spec"]["containers"][0]["image"] == "shop/web:1.0"
    assert after["metadata"]["labels"] == {"app": "web"}  # pod-template-hash is the controller's


def test_rollback_needs_a_revision_that_differs() -> None:
    f = finding("POD_CRASHLOOP", "rollout_undo", container=None, to_revision=1)
    plan = make_plan([f], ctx(deployment(), replicasets=[_rs(1, "shop/web:2.0")]))
    assert "already runs revision 1" in plan.refused[0].reason


def test_missing_config_is_reported_not_invented() -> None:
    f = Finding(
        code="POD_CONFIG_MISSING",
        severity="critical",
        object=POD,
        summary="missing",
        fix=Fix(
            action="create_missing",
            target=ObjectRef(kind="ConfigMap", name="app-config", namespace="shop"),
            params={"key": "LOG_LEVEL"},
        ),
    )
    plan = make_plan([f], ctx(deployment()))
    assert plan.changes == []
    assert "ConfigMap app-config key LOG_LEVEL is missing" in plan.refused[0].reason
    assert "does not invent" in plan.refused[0].reason


def test_several_causes_make_one_change_and_symptoms_are_covered() -> None:
    findings = [
        finding("POD_OOMKILLED", "set_resources", limits={"memory": "256Mi"}),
        finding("POD_PROBE_BAD_TARGET", "set_probe", probe="liveness", handler={"tcpSocket": {"port": 8080}}),
        Finding(code="DEPLOY_UNAVAILABLE", severity="critical", object=WEB, summary="0/4 available", tier=2),
    ]
    dep = deployment(
        {"resources": {"limits": {"memory": "128Mi"}}, "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}
    )
    plan = make_plan(findings, ctx(dep))
    change = only_change(plan)
    assert [e.action for e in change.edits] == ["set_resources", "set_probe"]
    assert change.findings == ["POD_OOMKILLED", "POD_PROBE_BAD_TARGET"]
    assert plan.refused == []  # the unavailable Deployment is a symptom of what the change fixes


def test_blast_radius_of_a_rolling_update_with_pdb_and_hpa() -> None:
    dep = deployment(replicas=4)
    edit = Edit(action="set_resources", container="app", params={"requests": {"cpu": "1"}})
    change = Change(target=WEB, edits=[edit])
    pdb = {
        "metadata": {"name": "web-pdb"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": 0},
    }
    hpa = {
        "metadata": {"name": "web-hpa"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10},
    }
    blast, risk = assess(change, dep, [pdb], [hpa])
    assert (blast.pods_restarted, blast.max_unavailable, risk) == (4, 1, "medium")
    assert any("web-pdb" in n and "allows 0" in n for n in blast.notes)
    assert any("web-hpa" in n and "requests" in n for n in blast.notes)
    recreate = deployment(replicas=3, strategy={"type": "Recreate"})
    assert assess(change, recreate, [], [])[1] == "high"
    scale = Change(target=WEB, edits=[Edit(action="scale", params={"replicas": 6})])
    blast, risk = assess(scale, dep, [], [hpa])
    assert risk == "low" and any("undo a manual scale" in n for n in blast.notes)


def test_edits_refuse_what_does_not_fit() -> None:
    with pytest.raises(EditError, match="no container 'db'"):
        apply_edits(deployment(), [Edit(action="set_image", container="db", params={"image": "x"})])
    with pytest.raises(EditError, match="cannot be scaled"):
        apply_edits({"kind": "DaemonSet", "spec": {}}, [Edit(action="scale", params={"replicas": 2})])
    with pytest.raises(EditError, match="exactly one of"):
        apply_edits(
            deployment({"livenessProbe": {"exec": {"command": ["true"]}}}),
            [Edit(action="set_probe", params={"probe": "liveness", "handler": {"tcpSocket": {}, "exec": {}}})],
        )


def test_operator_description_narrows_the_codes() -> None:
    assert codes_for_text("Liveness probe failed: HTTP probe failed with statuscode: 404") >= {"POD_PROBE_BAD_TARGET"}
    assert "POD_OOMKILLED" in codes_for_text("Back-off restarting failed container app (OOMKilled)")
    assert codes_for_text("0/3 nodes are available: 3 Insufficient cpu") == {"POD_INSUFFICIENT_RESOURCES"}
    assert codes_for_text("please look at it") is None
    # the seeds' /autofix example
    seeds = "Pod启动失败，原因是readinessProbe探针路径(/health)不存在，探针频率过高，且资源请求过高"
    assert codes_for_text(seeds) == {"POD_PROBE_BAD_TARGET", "POD_PROBE_AGGRESSIVE", "POD_INSUFFICIENT_RESOURCES"}
