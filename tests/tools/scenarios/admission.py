"""Pods refused at admission by a namespace- or cluster-level object (the real API server's admission plugins
do the refusing), and one where a namespace default breaks running pods. The top finding's subject is the
object to change, not the workload."""

from __future__ import annotations

from typing import Any

from tests.tools.diagnosis_scenarios import Kube, Scenario, now, wait_for, waiting_status

SECURE = {  # what Pod Security "restricted" asks of a container
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
}


def _refused(kube: Kube, ns: str) -> None:
    """Until the ReplicaSet controller has recorded the API server's refusal."""
    wait_for(
        lambda: any(
            c["type"] == "ReplicaFailure"
            for rs in kube.api("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]
            for c in rs.get("status", {}).get("conditions", [])
        ),
        "ReplicaFailure",
    )


def _web(kube: Kube, ns: str, broken: bool, **kw: Any) -> None:
    kube.deploy(ns, "web", wait=not broken, **kw)
    kube.service(ns, "web")
    if broken:
        _refused(kube, ns)


def limit_range_max(kube: Kube, ns: str, broken: bool) -> None:
    kube.create(
        f"/api/v1/namespaces/{ns}/limitranges",
        {"metadata": {"name": "mem"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "256Mi"}}]}},
    )
    memory = "512Mi" if broken else "128Mi"
    _web(kube, ns, broken, container={"resources": {"limits": {"memory": memory}}})


def limit_range_default(kube: Kube, ns: str, broken: bool) -> None:
    """No memory limit in the template: the LimitRanger fills in the namespace default, too small for the app."""
    default = "64Mi" if broken else "512Mi"
    kube.create(
        f"/api/v1/namespaces/{ns}/limitranges",
        {"metadata": {"name": "defaults"}, "spec": {"limits": [{"type": "Container", "default": {"memory": default}}]}},
    )
    pods = kube.deploy(ns, "web", replicas=2)
    kube.service(ns, "web")
    if broken:
        last = {"reason": "OOMKilled", "exitCode": 137, "startedAt": now(), "finishedAt": now()}
        for p in pods:
            kube.set_pod_status(ns, p["metadata"]["name"], waiting_status(p, "CrashLoopBackOff", restarts=4, last=last))
        kube.wait_available(ns, "web", 0)


def pod_security(kube: Kube, ns: str, broken: bool) -> None:
    kube.patch(
        f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    container = {"securityContext": {"privileged": True}} if broken else SECURE
    _web(kube, ns, broken, container=container)


def priority_class(kube: Kube, ns: str, broken: bool) -> None:
    name = f"{ns}-critical"
    kube.create(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        {"metadata": {"name": name, "labels": {"scenario": ns}}, "value": 1000},
    )
    _web(kube, ns, broken, pod_spec={"priorityClassName": "critical-apps" if broken else name})


def runtime_class(kube: Kube, ns: str, broken: bool) -> None:
    name = f"{ns}-gvisor"
    kube.create(
        "/apis/node.k8s.io/v1/runtimeclasses",
        {"metadata": {"name": name, "labels": {"scenario": ns}}, "handler": "runsc"},
    )
    _web(kube, ns, broken, pod_spec={"runtimeClassName": "gvisor" if broken else name})


def service_account(kube: Kube, ns: str, broken: bool) -> None:
    kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "web"}})
    _web(kube, ns, broken, pod_spec={"serviceAccountName": "robot" if broken else "web"})


def webhook_down(kube: Kube, ns: str, broken: bool) -> None:
    """A validating webhook for this namespace's pods whose backend Service does not exist; with failurePolicy
    Ignore (the twin) the API server lets the pods through."""
    kube.create(
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        {
            "metadata": {"name": f"{ns}-policy", "labels": {"scenario": ns}},
            "webhooks": [
                {
                    "name": "pods.policy.example.com",
                    "clientConfig": {"service": {"namespace": ns, "name": "policy", "path": "/validate"}},
                    "rules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                    "failurePolicy": "Fail" if broken else "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 2,
                }
            ],
        },
    )
    _web(kube, ns, broken)


SCENARIOS: list[Scenario] = [
    Scenario("limitrange-max", "LIMITRANGE_REJECTS", limit_range_max, {"limit_range": "mem"}, subject="LimitRange"),
    Scenario(
        "limitrange-default-oom", "POD_OOMKILLED", limit_range_default, {"memory_limit": "64Mi"}, subject="LimitRange"
    ),
    Scenario("pod-security", "POD_SECURITY_REJECTS", pod_security, {"enforce": "restricted"}, subject="Namespace"),
    Scenario(
        "priorityclass-missing",
        "PRIORITYCLASS_MISSING",
        priority_class,
        {"priorityClass": "critical-apps"},
        subject="PriorityClass",
    ),
    Scenario(
        "runtimeclass-missing",
        "RUNTIMECLASS_MISSING",
        runtime_class,
        {"runtimeClass": "gvisor"},
        subject="RuntimeClass",
    ),
    Scenario(
        "serviceaccount-missing",
        "SERVICEACCOUNT_MISSING",
        service_account,
        {"serviceAccount": "robot"},
        subject="ServiceAccount",
    ),
    Scenario(
        "webhook-unavailable",
        "ADMISSION_WEBHOOK_FAILS",
        webhook_down,
        {"webhook": "pods.policy.example.com", "unreachable": True},
        subject="ValidatingWebhookConfiguration",
    ),
]
