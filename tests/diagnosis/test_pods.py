"""Pod rules on plain dicts: each broken case gives its finding with evidence; the healthy twin gives none."""

from __future__ import annotations

import pytest

from tests.diagnosis.world import (
    codes,
    cond,
    container,
    event,
    fresh,
    meta,
    only,
    pod,
    replicaset,
    running,
    ts,
    waiting,
)


def _break_pods(w, **pod_kwargs):
    w["pods"] = [pod("web-abc-1", ready=False, **pod_kwargs), pod("web-abc-2", ready=False, **pod_kwargs)]
    w["deployments"][0]["status"]["availableReplicas"] = 0
    return w


def test_crashloop_reports_exit_code_and_folds_pods_into_the_deployment() -> None:
    last = {"reason": "Error", "exitCode": 1, "finishedAt": ts(2)}
    w = _break_pods(fresh(), statuses=[waiting("CrashLoopBackOff", "back-off 5m0s", restarts=6, last=last)])
    f = only(w, "POD_CRASHLOOP")
    assert f.object.kind == "Deployment" and f.object.name == "web"
    assert f.evidence["last_termination"] == "Error (exit 1)"
    assert f.evidence["restarts"] == 6 and f.evidence["pod_count"] == 2
    assert f.evidence["exit_code_meaning"] == "application error"
    assert f.fix is None  # only one revision: nothing to roll back to
    assert codes(w)[0] == "POD_CRASHLOOP"  # the pod cause ranks above the deployment/service symptoms


def test_crashloop_after_a_rollout_suggests_rolling_back() -> None:
    w = _break_pods(fresh(), rs="web-new", statuses=[waiting("CrashLoopBackOff", restarts=3, last={"exitCode": 127})])
    w["replicasets"] = [
        replicaset("web-abc", revision=1, replicas=0),
        replicaset("web-new", revision=2, image="shop/web:2.0"),
    ]
    f = only(w, "POD_CRASHLOOP")
    assert f.fix and f.fix.action == "rollout_undo" and f.fix.params == {"to_revision": 1}
    assert f.evidence["image_change"] == {"web": "shop/web:1.0 -> shop/web:2.0"}


def test_oomkilled_doubles_the_memory_limit() -> None:
    limits = {"resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}}
    last = {"reason": "OOMKilled", "exitCode": 137, "finishedAt": ts(1)}
    w = _break_pods(
        fresh(), containers=[container(**limits)], statuses=[waiting("CrashLoopBackOff", restarts=4, last=last)]
    )
    f = only(w, "POD_OOMKILLED")
    assert f.evidence["memory_limit"] == "256Mi"
    assert f.fix and f.fix.action == "set_resources" and f.fix.container == "web"
    assert f.fix.params == {"limits": {"memory": "512Mi"}}
    assert f.fix.target.kind == "Deployment"
    assert "POD_CRASHLOOP" not in codes(w)  # the OOM kill is the crash's cause: one finding, not two


def test_old_oom_kill_of_a_healthy_container_is_not_reported() -> None:
    w = fresh()
    w["pods"][0]["status"]["containerStatuses"] = [
        running(restarts=1, last={"reason": "OOMKilled", "finishedAt": ts(600)})
    ]
    assert codes(w) == []


def test_image_not_found_after_rollout_rolls_back() -> None:
    msg = 'Failed to pull image "shop/web:2.0": rpc error: code = NotFound desc = manifest unknown'
    w = _break_pods(
        fresh(),
        rs="web-new",
        containers=[container(image="shop/web:2.0")],
        statuses=[waiting("ImagePullBackOff", 'Back-off pulling image "shop/web:2.0"')],
    )
    w["replicasets"] = [
        replicaset("web-abc", revision=1, replicas=0),
        replicaset("web-new", revision=2, image="shop/web:2.0"),
    ]
    w["events"] = [event("Pod", "web-abc-1", "Failed", msg)]
    f = only(w, "POD_IMAGE_NOT_FOUND")
    assert f.evidence["image"] == "shop/web:2.0"
    assert f.fix and f.fix.action == "rollout_undo" and f.fix.params["to_revision"] == 1


def test_missing_pull_secret() -> None:
    w = _break_pods(
        fresh(),
        imagePullSecrets=[{"name": "private-reg"}],
        statuses=[
            waiting("ErrImagePull", "pull access denied, repository does not exist or may require 'docker login'")
        ],
    )
    f = only(w, "POD_PULL_SECRET_MISSING")
    assert f.evidence["missing_secrets"] == ["private-reg"]
    assert f.fix and f.fix.action == "create_missing" and f.fix.target.name == "private-reg"


def test_registry_auth_with_existing_secret() -> None:
    w = _break_pods(
        fresh(),
        imagePullSecrets=[{"name": "regcred"}],
        statuses=[waiting("ErrImagePull", "failed to authorize: 401 Unauthorized")],
    )
    assert only(w, "POD_REGISTRY_AUTH").evidence["image_pull_secrets"] == ["regcred"]


def test_missing_configmap_key() -> None:
    msg = "couldn't find key LOG_LEVEL in ConfigMap shop/app-config"
    env = [{"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "LOG_LEVEL"}}}]
    w = _break_pods(
        fresh(), phase="Pending", containers=[container(env=env)], statuses=[waiting("CreateContainerConfigError", msg)]
    )
    f = only(w, "POD_CONFIG_MISSING")
    assert f.evidence["missing"] == ["ConfigMap app-config key LOG_LEVEL"]
    assert f.fix and f.fix.target.kind == "ConfigMap" and f.fix.params == {"key": "LOG_LEVEL"}


def test_missing_secret_from_spec_and_message() -> None:
    env_from = [{"secretRef": {"name": "db-creds"}}]
    w = _break_pods(
        fresh(),
        phase="Pending",
        containers=[container(envFrom=env_from)],
        statuses=[waiting("CreateContainerConfigError", 'secret "db-creds" not found')],
    )
    assert only(w, "POD_CONFIG_MISSING").evidence["missing"] == ["Secret db-creds"]


def test_optional_missing_configmap_is_fine() -> None:
    w = fresh()
    w["pods"][0]["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "nope", "optional": True}}]
    assert codes(w) == []


def _pending(w, message, **kwargs):
    p = pod("web-abc-1", ready=False, phase="Pending", statuses=[], node_name=None, **kwargs)
    p["status"]["conditions"] = [cond("PodScheduled", "False", "Unschedulable", message)]
    w["pods"] = [w["pods"][1], p]
    w["deployments"][0]["status"]["availableReplicas"] = 1
    return w


def test_insufficient_cpu_with_numbers_and_a_request_that_fits() -> None:
    msg = (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. no new claims to "
        "deallocate, preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    w = _pending(fresh(), msg, containers=[container(resources={"requests": {"cpu": "6", "memory": "1Gi"}})])
    f = only(w, "POD_INSUFFICIENT_RESOURCES")
    assert f.evidence["requests"] == {"cpu": "6"}
    assert f.evidence["free on the best node"] == {"cpu": "4"}
    assert f.fix and f.fix.params == {"requests": {"cpu": "3600m"}}


def test_node_selector_matching_nothing() -> None:
    msg = (
        "0/3 nodes are available: 1 node(s) had untolerated taint(s), "
        "2 node(s) didn't match Pod's node affinity/selector."
    )
    f = only(_pending(fresh(), msg, nodeSelector={"disk": "ssd"}), "POD_NODE_AFFINITY_MISMATCH")
    assert f.evidence["node_selector"] == {"disk": "ssd"}


def test_taint_not_tolerated() -> None:
    w = _pending(fresh(), "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}. preemption: x")
    w["nodes"][0]["spec"]["taints"] = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    assert "dedicated=gpu:NoSchedule" in only(w, "POD_TAINT_NOT_TOLERATED").evidence["node_taints"]


def test_taints_on_some_nodes_do_not_hide_the_other_reasons() -> None:
    msg = (
        "0/7 nodes are available: 2 node(s) didn't match pod topology spread constraints (missing required "
        "label), 5 node(s) had untolerated taint(s). preemption: 0/7 nodes are available: 7 Preemption is not helpful"
    )
    f = only(_pending(fresh(), msg), "POD_UNSCHEDULABLE")
    assert f.evidence["reasons"] == {
        "node(s) didn't match pod topology spread constraints (missing required label)": 2,
        "node(s) had untolerated taint(s)": 5,
    }


@pytest.mark.parametrize(
    "reason", ["node(s) didn't match pod anti-affinity rules", "node(s) had volume node affinity conflict"]
)
def test_pod_and_volume_affinity_are_not_the_pods_node_selector(reason: str) -> None:
    f = only(_pending(fresh(), f"0/3 nodes are available: 3 {reason}."), "POD_UNSCHEDULABLE")
    assert f.evidence["reasons"] == {reason: 3}


def test_unbound_pvc_is_a_pod_symptom() -> None:
    vols = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    f = only(
        _pending(
            fresh(),
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3",
            volumes=vols,
        ),
        "POD_PVC_UNBOUND",
    )
    assert f.evidence["claims"] == ["data"] and f.tier == 1


def _probe_world(probe_kind, probe, message, ready=False, restarts=0):
    w = fresh()
    c = container(**{f"{probe_kind}Probe": probe})
    status = running(ready=ready, restarts=restarts)
    w["pods"] = [pod("web-abc-1", containers=[c], statuses=[status], ready=ready), w["pods"][1]]
    w["events"] = [event("Pod", "web-abc-1", "Unhealthy", message, count=12, field_path="spec.containers{web}")]
    return w


def test_liveness_probe_on_a_path_not_served_suggests_a_tcp_check() -> None:
    w = _probe_world(
        "liveness",
        {"httpGet": {"path": "/healthz", "port": 8080}},
        "Liveness probe failed: HTTP probe failed with statuscode: 404",
        ready=True,
        restarts=4,
    )
    f = only(w, "POD_PROBE_BAD_TARGET")
    assert f.severity == "critical" and f.evidence["failures"] == 12
    assert f.fix and f.fix.action == "set_probe"
    assert f.fix.params == {"probe": "liveness", "handler": {"tcpSocket": {"port": 8080}}}


def test_readiness_probe_on_an_unexposed_port() -> None:
    w = _probe_world(
        "readiness",
        {"httpGet": {"path": "/ready", "port": 9090}},
        'Readiness probe failed: Get "http://10.0.0.5:9090/ready": dial tcp: connect: connection refused',
    )
    f = only(w, "POD_PROBE_BAD_TARGET")
    assert f.evidence["container_ports"] == [8080] and f.severity == "critical"


def test_too_aggressive_probe_gets_sane_timing() -> None:
    probe = {
        "httpGet": {"path": "/ready", "port": 8080},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 1,
    }
    w = _probe_world(
        "readiness",
        probe,
        'Readiness probe failed: Get "http://10.0.0.5:8080/ready": context '
        "deadline exceeded (Client.Timeout exceeded while awaiting headers)",
    )
    f = only(w, "POD_PROBE_AGGRESSIVE")
    assert f.fix and f.fix.params["timing"] == {
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
        "initialDelaySeconds": 0,
    }


def test_probe_failing_for_an_application_reason() -> None:
    w = _probe_world(
        "readiness",
        {"httpGet": {"path": "/ready", "port": "http"}},
        "Readiness probe failed: HTTP probe failed with statuscode: 503",
    )
    assert only(w, "POD_PROBE_FAILING").fix is None


def test_probe_events_without_failures_elsewhere_are_ignored_for_a_healthy_pod() -> None:
    w = _probe_world(
        "readiness",
        {"httpGet": {"path": "/ready", "port": 8080}},
        "Readiness probe failed: HTTP probe failed with statuscode: 404",
        ready=True,
    )
    assert codes(w) == []  # a ready pod whose probe failed once is not in trouble


def test_restarting_container() -> None:
    w = fresh()
    w["pods"][0]["status"]["containerStatuses"] = [
        running(restarts=9, last={"reason": "Error", "exitCode": 2, "finishedAt": ts(10)})
    ]
    assert only(w, "POD_RESTARTING").evidence["restarts"] == 9


def test_stuck_terminating_with_finalizer() -> None:
    w = fresh()
    w["pods"][0]["metadata"].update(deletionTimestamp=ts(30), finalizers=["example.com/block"])
    f = only(w, "POD_STUCK_TERMINATING")
    assert f.evidence["finalizers"] == ["example.com/block"] and f.evidence["node_ready"] == "True"


def test_recently_deleted_pod_is_not_stuck() -> None:
    w = fresh()
    w["pods"][0]["metadata"]["deletionTimestamp"] = ts(-0.5)  # grace period still running
    assert "POD_STUCK_TERMINATING" not in codes(w)


def test_bare_pod_keeps_its_own_name() -> None:
    w = fresh()
    w["pods"].append(
        pod("debug", rs=None, labels={}, ready=False, statuses=[waiting("CrashLoopBackOff", last={"exitCode": 1})])
    )
    f = only(w, "POD_CRASHLOOP")
    assert f.object.kind == "Pod" and f.object.name == "debug"
    assert meta("x")["namespace"] == "shop"


def test_selector_onto_tainted_nodes_blames_the_taint() -> None:
    msg = "0/2 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) didn't match Pod's node affinity."
    w = _pending(fresh(), msg, nodeSelector={"pool": "gpu"})
    w["nodes"][0]["metadata"]["labels"] = {"pool": "gpu"}
    w["nodes"][0]["spec"]["taints"] = [{"key": "gpu", "effect": "NoSchedule"}]
    assert only(w, "POD_TAINT_NOT_TOLERATED").evidence["node_taints"] == ["gpu=:NoSchedule"]
