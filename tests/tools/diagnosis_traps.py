"""Healthy namespaces full of things that look suspicious but are fine: a diagnosis must report nothing above
severity info on any of them.

Each trap is built on the real test control plane like the scenarios of `diagnosis_scenarios.py`: the
controllers do the rollouts, Jobs and budgets; a builder writes only what a kubelet, a cloud controller or
an autoscaler would (pod and Service status, HPA status, events), with timestamps in the past where the trap
is about something that happened long ago.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.tools.diagnosis_scenarios import (
    Kube,
    _age_condition,
    _end_job_pod,
    _job_condition,
    hours_ago,
    now,
    running_status,
    wait_for,
    waiting_status,
)
from tests.tools.scenarios.admission import SECURE


@dataclass(frozen=True)
class Trap:
    """A healthy namespace made by `build(kube, ns)` that a careless rule would flag."""

    name: str
    build: Callable[[Kube, str], None]
    description: str


def days_ago(days: float) -> str:
    return hours_ago(days * 24)


def old_event(
    kube: Kube,
    ns: str,
    name: str,
    reason: str,
    message: str,
    last: str,
    first: str | None = None,
    kind: str = "Pod",
    count: int = 1,
    field_path: str | None = None,
    component: str = "kubelet",
    api_version: str = "v1",
) -> None:
    """A Warning event as its source wrote it, first and last seen at the given times."""
    involved = {"kind": kind, "namespace": ns, "name": name, "apiVersion": api_version}
    if field_path:
        involved["fieldPath"] = field_path
    kube.create(
        f"/api/v1/namespaces/{ns}/events",
        {
            "metadata": {"generateName": f"{name}."},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": count,
            "firstTimestamp": first or last,
            "lastTimestamp": last,
            "source": {"component": component},
        },
    )


def _get(kube: Kube, path: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.api("GET", path)
    return result


def _status_is(kube: Kube, path: str, **wanted: Any) -> None:
    wait_for(
        lambda: all(_get(kube, path).get("status", {}).get(k) == v for k, v in wanted.items()),
        f"{path} status {wanted}",
    )


def _force_delete_terminating(kube: Kube, ns: str, selector: str) -> None:
    """Old pods the controllers deleted: no kubelet confirms, so they stay Terminating until force-deleted."""
    for p in kube.pods(ns, selector):
        if p["metadata"].get("deletionTimestamp"):
            kube.api("DELETE", f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}", {"gracePeriodSeconds": 0})


def _new_image(kube: Kube, path: str, container: str, image: str) -> None:
    """`kubectl set image` on a workload."""
    kube.patch(path, {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}})


def _finish_rollout(kube: Kube, ns: str, name: str, image: str, replicas: int) -> None:
    """Change the Deployment's image and act as the kubelet until the new revision is complete and available."""
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
    _new_image(kube, path, "app", image)

    def done() -> bool:
        for p in kube.pods(ns, f"app={name}"):
            status = p.get("status", {})
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
            if p["spec"]["containers"][0]["image"] == image and p["spec"].get("nodeName") and not ready:
                kube.make_ready(ns, p)
        dep = _get(kube, path)
        st = dep["status"]
        return (
            st.get("observedGeneration") == dep["metadata"]["generation"]
            and st.get("updatedReplicas") == replicas
            and st.get("availableReplicas") == replicas
            and st.get("replicas") == replicas
        )

    wait_for(done, f"rollout of {name} to {image}")
    _force_delete_terminating(kube, ns, f"app={name}")


def _scheduled(kube: Kube, path: str) -> dict[str, Any] | None:
    """The pod at `path` once it exists and the scheduler has bound it."""
    pod = _get(kube, path) if kube.exists(path) else None
    return pod if pod and pod["spec"].get("nodeName") else None


def _statefulset(kube: Kube, ns: str, name: str, replicas: int, port: dict[str, Any] | None = None) -> None:
    """StatefulSet `name` governed by its headless Service `name`; its pods Ready one by one (OrderedReady)."""
    port = port or {"name": "tcp-pg", "containerPort": 5432}
    kube.create(
        f"/api/v1/namespaces/{ns}/services",
        {
            "metadata": {"name": name},
            "spec": {
                "clusterIP": "None",
                "selector": {"app": name},
                "ports": [{"name": port["name"], "port": port["containerPort"]}],
            },
        },
    )
    kube.create(
        f"/apis/apps/v1/namespaces/{ns}/statefulsets",
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "image": "postgres:16", "ports": [port]}]},
                },
            },
        },
    )
    for i in range(replicas):  # OrderedReady: the controller creates the next pod once this one is Ready
        path = f"/api/v1/namespaces/{ns}/pods/{name}-{i}"
        kube.make_ready(ns, wait_for(functools.partial(_scheduled, kube, path), f"pod {name}-{i} scheduled"))
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets/{name}"
    wait_for(
        lambda: all(_get(kube, path).get("status", {}).get(k, 0) == replicas for k in ("replicas", "readyReplicas")),
        f"statefulset {name} with {replicas} ready",
    )


# -- 1. rollouts -------------------------------------------------------------------------------------------
def rollouts(kube: Kube, ns: str) -> None:
    """A finished rollout to revision 2 (old ReplicaSet at 0), an app scaled to zero on purpose with its
    Service, a StatefulSet at 0 replicas with its headless Service, a Deployment paused for hours with nothing
    held back, a DaemonSet for nodes the cluster has none of at the moment."""
    kube.deploy(ns, "web", replicas=2, image="shop/web:1.0")
    kube.service(ns, "web")
    _finish_rollout(kube, ns, "web", "shop/web:1.1", 2)

    kube.deploy(ns, "legacy", replicas=2, image="shop/legacy:3.2")
    kube.service(ns, "legacy")
    legacy = f"/apis/apps/v1/namespaces/{ns}/deployments/legacy"
    kube.patch(legacy, {"spec": {"replicas": 0}})
    wait_for(lambda: _get(kube, legacy)["status"].get("replicas", 0) == 0, "legacy scaled to zero")
    _force_delete_terminating(kube, ns, "app=legacy")

    _statefulset(kube, ns, "cache", 0, {"name": "tcp-redis", "containerPort": 6379})

    kube.deploy(ns, "worker", replicas=1, image="shop/worker:2.4")
    worker = f"/apis/apps/v1/namespaces/{ns}/deployments/worker"
    kube.patch(worker, {"spec": {"paused": True}})
    _age_condition(kube, worker, "Progressing", "DeploymentPaused", 3)

    # the node agent of a GPU pool scaled to zero nodes: nothing to run, nothing missing
    kube.create(
        f"/apis/apps/v1/namespaces/{ns}/daemonsets",
        {
            "metadata": {"name": "gpu-driver"},
            "spec": {
                "selector": {"matchLabels": {"app": "gpu-driver"}},
                "template": {
                    "metadata": {"labels": {"app": "gpu-driver"}},
                    "spec": {
                        "nodeSelector": {"cloud.google.com/gke-accelerator": f"nvidia-l4-{ns}"},
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [{"name": "driver", "image": "nvidia/driver-installer:550"}],
                    },
                },
            },
        },
    )
    wait_for(
        lambda: (
            _get(kube, f"/apis/apps/v1/namespaces/{ns}/daemonsets/gpu-driver")
            .get("status", {})
            .get("observedGeneration")
        ),
        "the DaemonSet counted",
    )


# -- 2. batch ------------------------------------------------------------------------------------------------
def _job(kube: Kube, ns: str, name: str, backoff_limit: int = 0, **extra: Any) -> dict[str, Any]:
    metadata = {"name": name, **extra.pop("metadata", {})}
    body = {
        "metadata": metadata,
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": f"shop/{name}:1"}]}
            },
            **extra,
        },
    }
    created: dict[str, Any] = kube.create(f"/apis/batch/v1/namespaces/{ns}/jobs", body)
    return created


def _cron_run(kube: Kube, ns: str, cron: dict[str, Any], runs_ago: int, failed: bool) -> str:
    """The Job the CronJob controller started at its daily 03:00 UTC schedule `runs_ago` runs back (named, as
    the controller names it, after the scheduled minute), run to its end."""
    today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)
    last = today if today <= datetime.now(UTC) else today - timedelta(days=1)
    at = last - timedelta(days=runs_ago - 1)
    name = f"{cron['metadata']['name']}-{int(at.timestamp()) // 60}"
    owner = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": cron["metadata"]["name"],
        "uid": cron["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    kube.create(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {
            "metadata": {
                "name": name,
                "labels": {"app": cron["metadata"]["name"]},
                "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
                "ownerReferences": [owner],
            },
            "spec": cron["spec"]["jobTemplate"]["spec"],
        },
    )
    _end_job_pod(kube, ns, kube.wait_pods(ns, f"job-name={name}", 1)[0], failed=failed)
    _job_condition(kube, ns, name, "Failed" if failed else "Complete")
    return name


def _cronjob(kube: Kube, ns: str, name: str, schedule: str, **spec: Any) -> dict[str, Any]:
    template = {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": f"shop/{name}:1"}]},
            },
        }
    }
    created: dict[str, Any] = kube.create(
        f"/apis/batch/v1/namespaces/{ns}/cronjobs",
        {"metadata": {"name": name}, "spec": {"schedule": schedule, "jobTemplate": template, **spec}},
    )
    return created


def _stop_job_pods(kube: Kube, ns: str, job: str) -> None:
    """What the kubelet does with the pods the Job controller deletes: stop the container (SIGTERM, exit 143),
    report the pod Failed, and confirm the deletion."""
    for p in wait_for(
        lambda: [q for q in kube.pods(ns, f"job-name={job}") if q["metadata"].get("deletionTimestamp")],
        f"the Job controller to delete the pods of {job}",
    ):
        term = {"reason": "Error", "exitCode": 143, "startedAt": now(), "finishedAt": now()}
        statuses = [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": term},
            }
            for c in p["spec"]["containers"]
        ]
        kube.set_pod_status(ns, p["metadata"]["name"], {"phase": "Failed", "containerStatuses": statuses})
        kube.api("DELETE", f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}", {"gracePeriodSeconds": 0})
    wait_for(lambda: not kube.pods(ns, f"job-name={job}"), f"the pods of {job} gone")


def batch(kube: Kube, ns: str) -> None:
    """A completed Job, a Job that failed once and then succeeded, a CronJob whose last run succeeded after an
    older failed one, a CronJob suspended on purpose, a leap-day CronJob, a running Job its queue suspended a
    moment ago (preempted), and a Job created suspended a moment ago, waiting for its queue."""
    _job(kube, ns, "migrate")
    _end_job_pod(kube, ns, kube.wait_pods(ns, "job-name=migrate", 1)[0], failed=False)
    _job_condition(kube, ns, "migrate", "Complete")

    _job(kube, ns, "import", backoff_limit=3)
    first = kube.wait_pods(ns, "job-name=import", 1)[0]
    _end_job_pod(kube, ns, first, failed=True)
    retry = wait_for(  # the controller retries after its back-off (10 s)
        lambda: next(
            (
                p
                for p in kube.pods(ns, "job-name=import")
                if p["metadata"]["uid"] != first["metadata"]["uid"] and p["spec"].get("nodeName")
            ),
            None,
        ),
        "the retry pod",
        timeout=60,
    )
    _end_job_pod(kube, ns, retry, failed=False)
    _job_condition(kube, ns, "import", "Complete")

    nightly = _cronjob(kube, ns, "nightly", "0 3 * * *")
    _cron_run(kube, ns, nightly, 2, failed=True)
    time.sleep(1.1)  # runs a day apart are created in different seconds
    _cron_run(kube, ns, nightly, 1, failed=False)

    _cronjob(kube, ns, "report", "30 6 * * MON-FRI", suspend=True)
    _cronjob(kube, ns, "leapday-billing", "0 1 29 2 *")

    queue = {"labels": {"kueue.x-k8s.io/queue-name": "batch"}}
    _job(kube, ns, "reindex", backoff_limit=2, metadata=queue)
    kube.make_ready(ns, kube.wait_pods(ns, "job-name=reindex", 1)[0])
    kube.patch(f"/apis/batch/v1/namespaces/{ns}/jobs/reindex", {"spec": {"suspend": True}})
    _stop_job_pods(kube, ns, "reindex")
    _job_condition(kube, ns, "reindex", "Suspended")

    _job(kube, ns, "backfill", suspend=True, metadata=queue)
    _job_condition(kube, ns, "backfill", "Suspended")


# -- 3. old events -------------------------------------------------------------------------------------------
PROBES = {
    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 10},
    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
}


def _restarted_long_ago(kube: Kube, ns: str, pod: dict[str, Any], days: float) -> None:
    """Ready and running for `days`, after one restart (its liveness probe killed it then)."""
    status = running_status(pod)
    status["startTime"] = days_ago(days + 1)
    for cs in status["containerStatuses"]:
        cs["restartCount"] = 1
        cs["state"] = {"running": {"startedAt": days_ago(days)}}
        cs["lastState"] = {
            "terminated": {
                "reason": "Error",
                "exitCode": 137,
                "startedAt": days_ago(days + 1),
                "finishedAt": days_ago(days),
            }
        }
    for c in status["conditions"]:
        c["lastTransitionTime"] = days_ago(days)
    kube.set_pod_status(ns, pod["metadata"]["name"], status)


def old_events(kube: Kube, ns: str) -> None:
    """Running, Ready pods with Warning events from days ago (readiness failures, image pull back-off, a
    scheduling wait, a mount of a ConfigMap created since), a pod restarted once three days ago by its liveness
    probe, and a StatefulSet that hit the namespace's quota two days ago before the quota was raised."""
    web = kube.deploy(ns, "web", replicas=2, container=PROBES)
    kube.service(ns, "web")
    steady, restarted = web
    name = steady["metadata"]["name"]
    old_event(
        kube,
        ns,
        name,
        "Unhealthy",
        'Readiness probe failed: Get "http://10.244.0.10:8080/ready": dial tcp 10.244.0.10:8080: connect: '
        "connection refused",
        days_ago(2),
        days_ago(2.01),
        count=4,
        field_path="spec.containers{app}",
    )
    old_event(
        kube,
        ns,
        name,
        "BackOff",
        'Back-off pulling image "shop/web:1.0"',
        days_ago(2.1),
        days_ago(2.11),
        count=2,
        field_path="spec.containers{app}",
    )
    name = restarted["metadata"]["name"]
    _restarted_long_ago(kube, ns, restarted, 3)
    old_event(
        kube,
        ns,
        name,
        "Unhealthy",
        'Liveness probe failed: Get "http://10.244.0.10:8080/healthz": context deadline exceeded (Client.Timeout '
        "exceeded while awaiting headers)",
        days_ago(3),
        days_ago(3.001),
        count=3,
        field_path="spec.containers{app}",
    )

    kube.create(
        f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "reports-config"}, "data": {"LEVEL": "info"}}
    )
    volumes = [{"name": "config", "configMap": {"name": "reports-config"}}]
    (reports,) = kube.deploy(ns, "reports", pod_spec={"volumes": volumes})
    name = reports["metadata"]["name"]
    old_event(
        kube,
        ns,
        name,
        "FailedScheduling",
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption "
        "victims found for incoming pod.",
        days_ago(3),
        days_ago(3.02),
        count=6,
        component="default-scheduler",
    )
    old_event(
        kube,
        ns,
        name,
        "FailedMount",
        'MountVolume.SetUp failed for volume "config" : configmap "reports-config" not found',
        days_ago(2.9),
        days_ago(2.95),
        count=5,
    )

    _statefulset(kube, ns, "db", 2)
    kube.create(
        f"/api/v1/namespaces/{ns}/resourcequotas", {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "20"}}}
    )
    old_event(
        kube,
        ns,
        "db",
        "FailedCreate",
        'create Pod db-1 in StatefulSet db failed error: pods "db-1" is forbidden: exceeded quota: pods, requested: '
        "pods=1, used: pods=4, limited: pods=4",
        days_ago(2),
        days_ago(2.02),
        kind="StatefulSet",
        count=9,
        component="statefulset-controller",
        api_version="apps/v1",
    )


# -- 4. services ---------------------------------------------------------------------------------------------
def services(kube: Kube, ns: str) -> None:
    """An ExternalName Service, the headless Service of a StatefulSet, a selector-less Service with a manual
    EndpointSlice, a LoadBalancer Service with an address (after one failed attempt two days ago), a NodePort
    Service, and named targetPorts the pods declare (one in a sidecar)."""
    kube.create(
        f"/api/v1/namespaces/{ns}/services",
        {
            "metadata": {"name": "payments"},
            "spec": {"type": "ExternalName", "externalName": "api.payments.example.com"},
        },
    )
    _statefulset(kube, ns, "db", 2)
    kube.create(
        f"/api/v1/namespaces/{ns}/services",
        {"metadata": {"name": "legacy-db"}, "spec": {"ports": [{"name": "tcp-pg", "port": 5432}]}},
    )
    kube.create(
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
        {
            "metadata": {"name": "legacy-db-1", "labels": {"kubernetes.io/service-name": "legacy-db"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.20.0.5"], "conditions": {"ready": True}}],
            "ports": [{"name": "tcp-pg", "port": 5432, "protocol": "TCP"}],
        },
    )
    exporter = {"name": "exporter", "image": "shop/exporter:0.9", "ports": [{"containerPort": 9102, "name": "metrics"}]}
    kube.deploy(
        ns,
        "web",
        replicas=2,
        pod_spec={
            "containers": [
                {"name": "app", "image": "shop/web:1.0", "ports": [{"containerPort": 8080, "name": "http"}]},
                exporter,
            ]
        },
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/services",
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "metrics", "port": 9102, "targetPort": "metrics"},
                ],
            },
        },
    )
    kube.service(ns, "web-public", selector={"app": "web"}, target="http", type="LoadBalancer")
    kube.patch(
        f"/api/v1/namespaces/{ns}/services/web-public/status",
        {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}}},
    )
    old_event(
        kube,
        ns,
        "web-public",
        "SyncLoadBalancerFailed",
        "Error syncing load balancer: failed to ensure load balancer: googleapi: Error 403: QUOTA_EXCEEDED - "
        "Quota 'IN_USE_ADDRESSES' exceeded. Limit: 8.0 in region europe-west1.",
        days_ago(2),
        days_ago(2.01),
        kind="Service",
        count=3,
        component="service-controller",
    )
    kube.service(ns, "web-nodeport", selector={"app": "web"}, target=8080, type="NodePort")


# -- 5. policies ---------------------------------------------------------------------------------------------
def _hpa_paused_at_zero(kube: Kube, ns: str) -> None:
    """Deployment batch scaled to zero on purpose, with an HPA on it: the real HPA controller pauses itself and
    says so (ScalingActive=False, ScalingDisabled). A status written by hand would not survive the controller's
    next sync here (no metrics-server), so this trap keeps only what the controller itself maintains."""
    kube.deploy(ns, "batch", replicas=0, labels={"app": "batch"}, wait=False)
    cpu = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
    kube.create(
        path,
        {
            "metadata": {"name": "batch"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "batch"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": cpu}],
            },
        },
    )
    wait_for(
        lambda: any(
            c.get("reason") == "ScalingDisabled"
            for c in kube.api("GET", f"{path}/batch").get("status", {}).get("conditions") or []
        ),
        "the HPA controller to pause the autoscaler of a scaled-to-zero Deployment",
    )


def policies(kube: Kube, ns: str) -> None:
    """Pod Security restricted with complying pods, a LimitRange whose defaults give the pods their requests,
    a ResourceQuota with headroom, default-deny NetworkPolicies with allow rules for the Service's pods and DNS,
    a PodDisruptionBudget allowing one disruption of three, an HPA on a Deployment scaled to zero on purpose."""
    kube.patch(
        f"/api/v1/namespaces/{ns}",
        {"metadata": {"labels": {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}}},
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/limitranges",
        {
            "metadata": {"name": "defaults"},
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "500m", "memory": "512Mi"},
                        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                        "max": {"memory": "2Gi"},
                    }
                ]
            },
        },
    )
    hard = {"pods": "20", "requests.cpu": "4", "requests.memory": "8Gi", "limits.memory": "16Gi"}
    kube.create(f"/api/v1/namespaces/{ns}/resourcequotas", {"metadata": {"name": "compute"}, "spec": {"hard": hard}})
    wait_for(
        lambda: "hard" in _get(kube, f"/api/v1/namespaces/{ns}/resourcequotas/compute").get("status", {}),
        "quota status",
    )
    kube.deploy(ns, "web", replicas=3, container=SECURE)
    kube.service(ns, "web")

    netpol = f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
    kube.create(
        netpol,
        {"metadata": {"name": "default-deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
    )
    kube.create(
        netpol,
        {
            "metadata": {"name": "allow-web"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
                        ],
                        "ports": [{"port": "http"}],
                    }
                ],
            },
        },
    )
    kube.create(
        netpol,
        {
            "metadata": {"name": "allow-dns"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    }
                ],
            },
        },
    )

    kube.create(
        f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
        {"metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}},
    )
    _status_is(kube, f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/web", expectedPods=3, disruptionsAllowed=1)

    _hpa_paused_at_zero(kube, ns)


# -- 6. rolling updates in progress ------------------------------------------------------------------------
def _replaced(kube: Kube, ns: str, selector: str, image: str) -> None:
    """Act as the kubelet on a rolling update's first step: confirm the deletion of the old pod the controller
    removed, and start creating the container of its replacement (the new image is being pulled)."""

    def replacements() -> list[dict[str, Any]]:
        _force_delete_terminating(kube, ns, selector)
        return [
            p
            for p in kube.pods(ns, selector)
            if p["spec"]["containers"][0]["image"] == image
            and p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")
        ]

    new = wait_for(replacements, f"the replacement pod of {selector}")
    for p in new:
        kube.set_pod_status(ns, p["metadata"]["name"], waiting_status(p, "ContainerCreating", phase="Pending"))
    _force_delete_terminating(kube, ns, selector)


def rolling(kube: Kube, ns: str) -> None:
    """Rolling updates caught in their first step, each within the unavailability its strategy allows: a
    Deployment (maxUnavailable 1 of 4), a StatefulSet (one pod at a time) and a DaemonSet (maxUnavailable 1 of
    2 nodes) each with one pod being replaced a moment ago."""
    rolling_update = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    kube.deploy(ns, "api", replicas=4, image="shop/api:1.4", strategy=rolling_update)
    kube.service(ns, "api")
    api = f"/apis/apps/v1/namespaces/{ns}/deployments/api"
    _new_image(kube, api, "app", "shop/api:1.5")
    _replaced(kube, ns, "app=api", "shop/api:1.5")
    _status_is(kube, api, updatedReplicas=1, availableReplicas=3, replicas=4)

    _statefulset(kube, ns, "db", 3)
    db = f"/apis/apps/v1/namespaces/{ns}/statefulsets/db"
    _new_image(kube, db, "main", "postgres:16.4")
    _replaced(kube, ns, "app=db", "postgres:16.4")
    _status_is(kube, db, readyReplicas=2, replicas=3)

    nodes = [f"n-{ns}", f"n-{ns}-b"]
    for node in nodes:
        kube.control_plane.add_node(
            node, labels={"scenario": ns}, taints=[{"key": "scenario", "value": ns, "effect": "NoSchedule"}]
        )
    kube.create(
        f"/apis/apps/v1/namespaces/{ns}/daemonsets",
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "nodeSelector": {"scenario": ns},
                        "tolerations": [{"key": "scenario", "operator": "Equal", "value": ns, "effect": "NoSchedule"}],
                        "containers": [{"name": "agent", "image": "shop/agent:1.0"}],
                    },
                },
            },
        },
    )
    for p in kube.wait_pods(ns, "app=agent", 2):
        kube.make_ready(ns, p)
    agent = f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent"
    _status_is(kube, agent, desiredNumberScheduled=2, numberAvailable=2)
    _new_image(kube, agent, "agent", "shop/agent:1.1")
    _replaced(kube, ns, "app=agent", "shop/agent:1.1")
    _status_is(kube, agent, desiredNumberScheduled=2, numberAvailable=1, numberUnavailable=1)


TRAPS: list[Trap] = [
    Trap("trap-rollouts", rollouts, "finished rollout, app scaled to zero with its Service, StatefulSet at 0, paused"),
    Trap("trap-batch", batch, "completed and retried Jobs, CronJob history with an old failure, suspensions"),
    Trap("trap-old-events", old_events, "Ready pods with Warning events from days ago, a restart 3 days ago"),
    Trap("trap-services", services, "ExternalName, headless, selector-less, LoadBalancer, NodePort, named ports"),
    Trap("trap-policies", policies, "Pod Security, LimitRange defaults, quota, default-deny, PDB, HPA of an idle app"),
    Trap("trap-rolling", rolling, "Deployment, StatefulSet and DaemonSet rollouts one pod in, within their budget"),
]
