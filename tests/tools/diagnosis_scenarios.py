"""Broken states built on the real test control plane, one root cause each, with a healthy twin.

Shared by the diagnosis integration tests (`test_diagnose_scenarios.py`) and the scenario benchmark
(`benchmarks/diagnosis_scenarios.py`). There is no kubelet: a builder creates the objects, lets the
controllers and the scheduler do their part, then sets pod states through the status subresource and
writes the Events a kubelet would have written.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Api = Callable[..., Any]  # ControlPlane.api(method, path, body=None, content_type=...)
MERGE = "application/merge-patch+json"
MESH_NAMESPACE = "istio-system"
INGRESS_CLASS = "nginx"
APPROVED = "https://github.com/kubernetes-sigs/gateway-api/pull/2466"  # needed for *.k8s.io CRD groups

CRDS = [  # (group, plural, kind, versions, namespaced)
    ("networking.istio.io", "gateways", "Gateway", ["v1", "v1beta1", "v1alpha3"]),
    ("networking.istio.io", "virtualservices", "VirtualService", ["v1", "v1beta1", "v1alpha3"]),
    ("networking.istio.io", "destinationrules", "DestinationRule", ["v1", "v1beta1", "v1alpha3"]),
    ("networking.istio.io", "serviceentries", "ServiceEntry", ["v1", "v1beta1", "v1alpha3"]),
    ("networking.istio.io", "sidecars", "Sidecar", ["v1", "v1beta1", "v1alpha3"]),
    ("security.istio.io", "peerauthentications", "PeerAuthentication", ["v1", "v1beta1"]),
    ("security.istio.io", "authorizationpolicies", "AuthorizationPolicy", ["v1", "v1beta1"]),
    ("gateway.networking.k8s.io", "gateways", "Gateway", ["v1", "v1beta1"]),
    ("gateway.networking.k8s.io", "httproutes", "HTTPRoute", ["v1", "v1beta1"]),
    ("gateway.networking.k8s.io", "gatewayclasses", "GatewayClass", ["v1", "v1beta1"]),
]
CLUSTER_SCOPED = {"gatewayclasses"}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Kube:
    """Small helpers over the control plane's raw API function."""

    def __init__(self, api: Api, control_plane: Any = None) -> None:
        self.api = api
        self.control_plane = control_plane  # for fake nodes (ControlPlane.add_node)

    def create(self, path: str, body: dict[str, Any]) -> Any:
        return self.api("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.api("PATCH", path, body, content_type=MERGE)

    def exists(self, path: str) -> bool:
        try:
            self.api("GET", path)
        except RuntimeError:
            return False
        return True

    def pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"]

    def wait_pods(self, ns: str, selector: str, count: int, scheduled: bool = True) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(ns, selector) if not p["metadata"].get("deletionTimestamp")]
            if len(pods) >= count and (not scheduled or all(p["spec"].get("nodeName") for p in pods)):
                return pods
            return None

        return wait_for(ready, f"{count} pod(s) {selector} in {ns}")

    def wait_available(self, ns: str, deployment: str, count: int) -> None:
        """Until the Deployment controller has counted `count` available replicas (as it would have long before
        anyone looks at a broken workload)."""
        path = f"/apis/apps/v1/namespaces/{ns}/deployments/{deployment}"
        wait_for(
            lambda: self.api("GET", path).get("status", {}).get("availableReplicas", 0) == count,
            f"{deployment} with {count} available replica(s)",
        )

    def set_pod_status(self, ns: str, pod: str, status: dict[str, Any]) -> None:
        self.patch(f"/api/v1/namespaces/{ns}/pods/{pod}/status", {"status": status})

    def make_ready(
        self, ns: str, pod: dict[str, Any], ready: bool = True, restarts: int = 0, last: dict[str, Any] | None = None
    ) -> None:
        self.set_pod_status(ns, pod["metadata"]["name"], running_status(pod, ready, restarts, last))

    def event(
        self,
        ns: str,
        name: str,
        reason: str,
        message: str,
        kind: str = "Pod",
        count: int = 5,
        field_path: str | None = None,
    ) -> None:
        involved = {"kind": kind, "namespace": ns, "name": name, "apiVersion": "v1"}
        if field_path:
            involved["fieldPath"] = field_path
        stamp = now()
        self.create(
            f"/api/v1/namespaces/{ns}/events",
            {
                "metadata": {"generateName": f"{name}."},
                "involvedObject": involved,
                "reason": reason,
                "message": message,
                "type": "Warning",
                "count": count,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "source": {"component": "kubelet"},
            },
        )

    def deploy(
        self,
        ns: str,
        name: str,
        replicas: int = 1,
        image: str = "shop/web:1.0",
        ready: bool = True,
        container: dict[str, Any] | None = None,
        pod_spec: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        wait: bool = True,
        **spec: Any,
    ) -> list[dict[str, Any]]:
        """A Deployment; with `wait`, its pods scheduled (and Ready when `ready`)."""
        labels = labels or {"app": name}
        c = {"name": "app", "image": image, "ports": [{"containerPort": 8080, "name": "http"}], **(container or {})}
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": labels["app"]}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [c], **(pod_spec or {})}},
                **spec,
            },
        }
        self.create(f"/apis/apps/v1/namespaces/{ns}/deployments", body)
        if not wait:
            return []
        pods = self.wait_pods(ns, f"app={labels['app']}", replicas)
        if ready:
            for p in pods:
                self.make_ready(ns, p)
            wait_for(
                lambda: (
                    self.api("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")["status"].get(
                        "availableReplicas", 0
                    )
                    >= replicas
                ),
                f"deployment {ns}/{name} available",
            )
        return pods

    def service(
        self,
        ns: str,
        name: str,
        selector: dict[str, str] | None = None,
        target: Any = 8080,
        port_name: str = "http",
        **spec: Any,
    ) -> None:
        self.create(
            f"/api/v1/namespaces/{ns}/services",
            {
                "metadata": {"name": name},
                "spec": {
                    "selector": selector or {"app": name},
                    "ports": [{"name": port_name, "port": 80, "targetPort": target}],
                    **spec,
                },
            },
        )


def running_status(
    pod: dict[str, Any], ready: bool = True, restarts: int = 0, last: dict[str, Any] | None = None
) -> dict[str, Any]:
    started = now()
    statuses = []
    for c in pod["spec"]["containers"]:
        cs: dict[str, Any] = {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": ready,
            "started": True,
            "restartCount": restarts,
            "state": {"running": {"startedAt": started}},
        }
        if last:
            cs["lastState"] = {"terminated": last}
        statuses.append(cs)
    flag = "True" if ready else "False"
    return {
        "phase": "Running",
        "podIP": "10.244.0.10",
        "startTime": started,
        "containerStatuses": statuses,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": flag},
            {"type": "Ready", "status": flag},
        ],
    }


def waiting_status(
    pod: dict[str, Any],
    reason: str,
    message: str = "",
    restarts: int = 0,
    last: dict[str, Any] | None = None,
    phase: str = "Running",
) -> dict[str, Any]:
    status = running_status(pod, ready=False, restarts=restarts, last=last)
    status["phase"] = phase
    for cs in status["containerStatuses"]:
        cs["state"] = {"waiting": {"reason": reason, "message": message}}
        cs["started"] = False
    return status


# -- cluster-wide setup ----------------------------------------------------------------------------------
def install_mesh(kube: Kube) -> None:
    """Istio and Gateway API CRDs (their real groups and versions), an IngressClass, and a fake ingress
    gateway deployment in istio-system with a TLS secret. Idempotent."""
    for group, plural, kind, versions in CRDS:
        name = f"{plural}.{group}"
        if not kube.exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"):
            kube.create(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                {
                    "metadata": {"name": name, "annotations": {"api-approved.kubernetes.io": APPROVED}},
                    "spec": {
                        "group": group,
                        "scope": "Cluster" if plural in CLUSTER_SCOPED else "Namespaced",
                        "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                        "versions": [
                            {
                                "name": v,
                                "served": True,
                                "storage": i == 0,
                                "subresources": {"status": {}},
                                "schema": {
                                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                                },
                            }
                            for i, v in enumerate(versions)
                        ],
                    },
                },
            )

    def established(name: str) -> bool:
        crd = kube.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        return any(
            c["type"] == "Established" and c["status"] == "True" for c in crd.get("status", {}).get("conditions", [])
        )

    for group, plural, _, _ in CRDS:
        wait_for(functools.partial(established, f"{plural}.{group}"), f"CRD {plural}.{group} established")
    if not kube.exists(f"/apis/networking.k8s.io/v1/ingressclasses/{INGRESS_CLASS}"):
        kube.create(
            "/apis/networking.k8s.io/v1/ingressclasses",
            {
                "metadata": {
                    "name": INGRESS_CLASS,
                    "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"},
                },
                "spec": {"controller": "k8s.io/ingress-nginx"},
            },
        )
    if not kube.exists(f"/api/v1/namespaces/{MESH_NAMESPACE}"):
        kube.create("/api/v1/namespaces", {"metadata": {"name": MESH_NAMESPACE}})
        kube.create(
            f"/api/v1/namespaces/{MESH_NAMESPACE}/secrets",
            {"metadata": {"name": "shop-cert"}, "type": "Opaque", "data": {"tls.crt": "", "tls.key": ""}},
        )
        kube.deploy(
            MESH_NAMESPACE,
            "istio-ingressgateway",
            labels={"app": "istio-ingressgateway", "istio": "ingressgateway"},
            container={"name": "istio-proxy"},
        )
        kube.deploy(
            MESH_NAMESPACE,
            "istiod",
            image="docker.io/istio/pilot:1.24.2",
            labels={"app": "istiod"},
            container={"name": "discovery"},
        )
        server = {
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "hosts": ["*.example.com"],
            "tls": {"mode": "SIMPLE", "credentialName": "shop-cert"},
        }
        _istio(
            kube,
            MESH_NAMESPACE,
            "gateways",
            {"metadata": {"name": "shop-gw"}, "spec": {"selector": {"istio": "ingressgateway"}, "servers": [server]}},
        )
    # every Istio API answers before tests rely on discovery
    wait_for(lambda: kube.exists("/apis/networking.istio.io/v1/virtualservices"), "Istio API served")


# -- scenarios ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """A root cause: `build(kube, ns, broken)` makes it (or its healthy twin); the top finding must be `code`."""

    name: str
    code: str
    build: Callable[[Kube, str, bool], None]
    evidence: dict[str, Any] | None = None  # key → expected value in the top finding's evidence
    summary_has: str | None = None
    mesh: bool = False
    subject: str | None = None  # the kind of the object to change, when it is not the workload or pod


def _web(kube: Kube, ns: str, replicas: int = 2, **kw: Any) -> list[dict[str, Any]]:
    pods = kube.deploy(ns, "web", replicas=replicas, **kw)
    kube.service(ns, "web")
    return pods


def crashloop(kube: Kube, ns: str, broken: bool) -> None:
    pods = _web(kube, ns)
    if broken:
        last = {"reason": "Error", "exitCode": 1, "startedAt": now(), "finishedAt": now()}
        for p in pods:
            kube.set_pod_status(
                ns,
                p["metadata"]["name"],
                waiting_status(
                    p, "CrashLoopBackOff", "back-off 5m0s restarting failed container", restarts=5, last=last
                ),
            )
        kube.wait_available(ns, "web", 0)


def oomkilled(kube: Kube, ns: str, broken: bool) -> None:
    pods = _web(kube, ns, container={"resources": {"limits": {"memory": "128Mi"}}})
    if broken:
        last = {"reason": "OOMKilled", "exitCode": 137, "startedAt": now(), "finishedAt": now()}
        for p in pods:
            kube.set_pod_status(ns, p["metadata"]["name"], waiting_status(p, "CrashLoopBackOff", restarts=3, last=last))
        kube.wait_available(ns, "web", 0)


def bad_image_rollout(kube: Kube, ns: str, broken: bool) -> None:
    _web(kube, ns)
    image = "shop/web:2.0-typo" if broken else "shop/web:2.0"
    kube.patch(
        f"/apis/apps/v1/namespaces/{ns}/deployments/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
    )
    new = wait_for(
        lambda: [
            p
            for p in kube.pods(ns, "app=web")
            if p["spec"]["containers"][0]["image"] == image and p["spec"].get("nodeName")
        ],
        "the new revision's pod",
    )
    for p in new:
        if broken:
            kube.set_pod_status(
                ns,
                p["metadata"]["name"],
                waiting_status(p, "ImagePullBackOff", f'Back-off pulling image "{image}"', phase="Pending"),
            )
            kube.event(
                ns,
                p["metadata"]["name"],
                "Failed",
                f'Failed to pull image "{image}": rpc error: code = '
                f"NotFound desc = failed to resolve reference: {image}: not found",
            )
        else:
            kube.make_ready(ns, p)
    if not broken:  # let the rollout finish

        def done() -> bool:
            for p in kube.pods(ns, "app=web"):
                if (
                    p["spec"]["containers"][0]["image"] == image
                    and p["spec"].get("nodeName")
                    and not any(
                        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])
                    )
                ):
                    kube.make_ready(ns, p)
            st = kube.api("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")["status"]
            return st.get("updatedReplicas") == 2 and st.get("availableReplicas") == 2 and st.get("replicas") == 2

        wait_for(done, "rollout to finish")
        for p in kube.pods(ns, "app=web"):  # old pods: no kubelet confirms their deletion
            if p["metadata"].get("deletionTimestamp"):
                kube.api("DELETE", f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}", {"gracePeriodSeconds": 0})


def pull_secret_missing(kube: Kube, ns: str, broken: bool) -> None:
    if not broken:
        kube.create(f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": "regcred"}, "type": "Opaque", "data": {}})
    pods = _web(kube, ns, ready=not broken, pod_spec={"imagePullSecrets": [{"name": "regcred"}]})
    for p in pods if broken else []:
        kube.set_pod_status(
            ns,
            p["metadata"]["name"],
            waiting_status(p, "ErrImagePull", "failed to authorize: 401 Unauthorized", phase="Pending"),
        )


def registry_auth(kube: Kube, ns: str, broken: bool) -> None:
    pods = _web(kube, ns, ready=not broken, image="registry.example.com/private/web:1.0")
    for p in pods if broken else []:
        kube.set_pod_status(
            ns, p["metadata"]["name"], waiting_status(p, "ImagePullBackOff", "Back-off pulling image", phase="Pending")
        )
        kube.event(
            ns,
            p["metadata"]["name"],
            "Failed",
            'Failed to pull image "registry.example.com/private/web:1.0":'
            " failed to authorize: failed to fetch anonymous token: unexpected status: 401 Unauthorized",
        )


def config_missing(kube: Kube, ns: str, broken: bool) -> None:
    if not broken:
        kube.create(
            f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "app-config"}, "data": {"LOG_LEVEL": "info"}}
        )
    env = [{"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "LOG_LEVEL"}}}]
    pods = _web(kube, ns, ready=not broken, container={"env": env})
    for p in pods if broken else []:
        kube.set_pod_status(
            ns,
            p["metadata"]["name"],
            waiting_status(p, "CreateContainerConfigError", 'configmap "app-config" not found', phase="Pending"),
        )


def _wait_unschedulable(kube: Kube, ns: str, selector: str = "app=web") -> None:
    wait_for(
        lambda: any(
            c.get("reason") == "Unschedulable"
            for p in kube.pods(ns, selector)
            for c in p["status"].get("conditions", [])
        ),
        "the scheduler to give up",
    )


def insufficient_cpu(kube: Kube, ns: str, broken: bool) -> None:
    cpu = "64" if broken else "100m"
    kube.deploy(
        ns,
        "web",
        replicas=1,
        ready=not broken,
        wait=not broken,
        container={"resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}},
    )
    if broken:
        _wait_unschedulable(kube, ns)


def node_selector(kube: Kube, ns: str, broken: bool) -> None:
    selector = {"disktype": "nvme"} if broken else {"kubernetes.io/os": "linux"}
    kube.deploy(ns, "web", ready=not broken, wait=not broken, pod_spec={"nodeSelector": selector})
    if broken:
        _wait_unschedulable(kube, ns)


def taint(kube: Kube, ns: str, broken: bool) -> None:
    tolerations = (
        []
        if broken
        else [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
    )
    kube.deploy(
        ns,
        "web",
        ready=not broken,
        wait=not broken,
        pod_spec={"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}, "tolerations": tolerations},
    )
    if broken:
        _wait_unschedulable(kube, ns)


def topology_spread(kube: Kube, ns: str, broken: bool) -> None:
    # a node agent that tolerates every taint, spread over zones on a cluster whose nodes carry no zone label
    spread = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone" if broken else "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}},
    }
    kube.deploy(
        ns,
        "web",
        replicas=1,
        ready=not broken,
        wait=not broken,
        pod_spec={"tolerations": [{"operator": "Exists"}], "topologySpreadConstraints": [spread]},
    )
    if broken:
        _wait_unschedulable(kube, ns)


def liveness_404(kube: Kube, ns: str, broken: bool) -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
    pods = _web(kube, ns, container={"livenessProbe": probe})
    for p in pods if broken else []:
        kube.make_ready(
            ns,
            p,
            ready=True,
            restarts=4,
            last={"reason": "Error", "exitCode": 137, "startedAt": now(), "finishedAt": now()},
        )
        kube.event(
            ns,
            p["metadata"]["name"],
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
            count=12,
            field_path="spec.containers{app}",
        )


def readiness_aggressive(kube: Kube, ns: str, broken: bool) -> None:
    probe = {
        "httpGet": {"path": "/ready", "port": 8080},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 1,
    }
    pods = _web(kube, ns, container={"readinessProbe": probe})
    for p in pods if broken else []:
        kube.make_ready(ns, p, ready=False)
        kube.event(
            ns,
            p["metadata"]["name"],
            "Unhealthy",
            'Readiness probe failed: Get "http://10.244.0.10:8080/'
            'ready": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
            count=40,
            field_path="spec.containers{app}",
        )


def stuck_terminating(kube: Kube, ns: str, broken: bool) -> None:
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "worker", "finalizers": ["example.com/cleanup"]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "busybox"}]},
        },
    )
    pod = kube.api("GET", f"/api/v1/namespaces/{ns}/pods/worker")
    kube.make_ready(ns, pod)
    if broken:
        kube.api("DELETE", f"/api/v1/namespaces/{ns}/pods/worker", {"gracePeriodSeconds": 0})


def pod_restarting(kube: Kube, ns: str, broken: bool) -> None:
    pods = _web(kube, ns)
    for p in pods if broken else []:  # Ready again, but its container has exited 7 times, last just now
        last = {"reason": "Error", "exitCode": 2, "startedAt": now(), "finishedAt": now()}
        kube.make_ready(ns, p, restarts=7, last=last)


def hours_ago(hours: float) -> str:
    return datetime.fromtimestamp(time.time() - hours * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age_condition(kube: Kube, path: str, kind: str, reason: str, hours: float) -> None:
    """Wait for the control plane to set condition `kind` with `reason`, then date it `hours` back (as if the
    state had lasted that long; the controllers keep a condition's time while its reason stays the same)."""

    def current() -> list[dict[str, Any]] | None:
        conditions = kube.api("GET", path).get("status", {}).get("conditions") or []
        return conditions if any(c["type"] == kind and c.get("reason") == reason for c in conditions) else None

    conditions = wait_for(current, f"{kind}={reason} on {path}")
    for c in conditions:
        if c["type"] == kind:
            c["lastTransitionTime"] = hours_ago(hours)
            if "lastUpdateTime" in c:
                c["lastUpdateTime"] = hours_ago(hours)
    kube.patch(f"{path}/status", {"status": {"conditions": conditions}})


def scheduling_gated(kube: Kube, ns: str, broken: bool) -> None:
    """A pod held by a scheduling gate: for two hours (broken), or for a moment (twin: the gate is being lifted)."""
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "batch-0", "labels": {"app": "batch"}},
            "spec": {
                "schedulingGates": [{"name": "example.com/queue"}],
                "containers": [{"name": "app", "image": "shop/batch:1.0"}],
            },
        },
    )
    _age_condition(kube, f"/api/v1/namespaces/{ns}/pods/batch-0", "PodScheduled", "SchedulingGated", 2 if broken else 0)


def paused_rollout(kube: Kube, ns: str, broken: bool) -> None:
    """A Deployment paused two hours ago; broken: its image was changed since, so the change never rolls out.
    Twin: paused as long, nothing held back."""
    _web(kube, ns, replicas=1)
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    kube.patch(path, {"spec": {"paused": True}})
    if broken:
        containers = [{"name": "app", "image": "shop/web:2.0"}]
        kube.patch(path, {"spec": {"template": {"spec": {"containers": containers}}}})
        wait_for(
            lambda: (
                kube.api("GET", path)["status"].get("observedGeneration")
                == kube.api("GET", path)["metadata"]["generation"]
            ),
            "the paused change observed",
        )
    _age_condition(kube, path, "Progressing", "DeploymentPaused", 2)


def rollout_stuck(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", replicas=1, wait=True, progressDeadlineSeconds=2 if broken else 600, ready=not broken)
    if broken:
        wait_for(
            lambda: any(
                c.get("reason") == "ProgressDeadlineExceeded"
                for c in kube.api("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")["status"].get(
                    "conditions", []
                )
            ),
            "ProgressDeadlineExceeded",
        )


def quota(kube: Kube, ns: str, broken: bool) -> None:
    kube.create(
        f"/api/v1/namespaces/{ns}/resourcequotas",
        {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "0" if broken else "10"}}},
    )
    wait_for(
        lambda: "hard" in kube.api("GET", f"/api/v1/namespaces/{ns}/resourcequotas/pods").get("status", {}),
        "quota status",
    )
    kube.deploy(ns, "web", wait=not broken)
    if broken:
        wait_for(
            lambda: any(
                c["type"] == "ReplicaFailure"
                for rs in kube.api("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]
                for c in rs["status"].get("conditions", [])
            ),
            "ReplicaFailure",
        )


def _stuck_creating(kube: Kube, ns: str, pod: dict[str, Any]) -> None:
    """The pod sits in ContainerCreating: the node's network plugin cannot set up its sandbox."""
    name = pod["metadata"]["name"]
    kube.set_pod_status(ns, name, waiting_status(pod, "ContainerCreating", phase="Pending"))
    kube.event(
        ns,
        name,
        "FailedCreatePodSandBox",
        "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox: plugin "
        'type="calico" failed (add): stat /var/lib/calico/nodename: no such file or directory',
    )


def _db(kube: Kube, ns: str, service: dict[str, Any] | None, ready: bool = True) -> None:
    """StatefulSet db (one pod, Ready or stuck creating) and, when given, its governing Service with `service`
    merged into the spec."""
    if service is not None:
        kube.create(
            f"/api/v1/namespaces/{ns}/services",
            {
                "metadata": {"name": "db"},
                "spec": {"selector": {"app": "db"}, "ports": [{"name": "tcp-pg", "port": 5432}], **service},
            },
        )
    kube.create(
        f"/apis/apps/v1/namespaces/{ns}/statefulsets",
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {
                        "containers": [{"name": "pg", "image": "postgres:16", "ports": [{"containerPort": 5432}]}]
                    },
                },
            },
        },
    )
    pod = kube.wait_pods(ns, "app=db", 1)[0]
    if ready:
        kube.make_ready(ns, pod)
    else:
        _stuck_creating(kube, ns, pod)
    wanted = {"replicas": 1, "readyReplicas": 1 if ready else None}
    wait_for(
        lambda: all(
            kube.api("GET", f"/apis/apps/v1/namespaces/{ns}/statefulsets/db")["status"].get(k) == v
            for k, v in wanted.items()
        ),
        "statefulset status",
    )


def sts_service(kube: Kube, ns: str, broken: bool) -> None:
    _db(kube, ns, None if broken else {"clusterIP": "None"})


def sts_not_headless(kube: Kube, ns: str, broken: bool) -> None:
    _db(kube, ns, {} if broken else {"clusterIP": "None"})


def sts_unavailable(kube: Kube, ns: str, broken: bool) -> None:
    _db(kube, ns, {"clusterIP": "None"}, ready=not broken)


def _daemon(kube: Kube, ns: str) -> tuple[str, dict[str, Any]]:
    """DaemonSet agent pinned to the scenario's own node, which the controller and the scheduler fill."""
    node = _scenario_node(kube, ns)
    kube.create(
        f"/apis/apps/v1/namespaces/{ns}/daemonsets",
        {
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": node},
                        "tolerations": [{"key": "scenario", "operator": "Equal", "value": ns, "effect": "NoSchedule"}],
                        "containers": [{"name": "agent", "image": "shop/agent:1.0"}],
                    },
                },
            },
        },
    )
    return node, kube.wait_pods(ns, "app=agent", 1)[0]


def _daemon_status(kube: Kube, ns: str, **wanted: int) -> None:
    wait_for(
        lambda: all(
            kube.api("GET", f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent")["status"].get(k, 0) == v
            for k, v in wanted.items()
        ),
        f"daemonset status {wanted}",
    )


def ds_unavailable(kube: Kube, ns: str, broken: bool) -> None:
    _, pod = _daemon(kube, ns)
    if broken:
        _stuck_creating(kube, ns, pod)
        _daemon_status(kube, ns, desiredNumberScheduled=1, numberUnavailable=1)
    else:
        kube.make_ready(ns, pod)
        _daemon_status(kube, ns, desiredNumberScheduled=1, numberAvailable=1)


def ds_misscheduled(kube: Kube, ns: str, broken: bool) -> None:
    node, pod = _daemon(kube, ns)
    if broken:  # the node is handed to another team: a NoSchedule taint the daemon pods do not tolerate
        taints = [
            {"key": "scenario", "value": ns, "effect": "NoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
        ]
        kube.patch(f"/api/v1/nodes/{node}", {"spec": {"taints": taints}})
        # The controller does not resync on a NoSchedule taint: it recounts on the pod's next status report.
        # The kubelet reports Ready until the count changes (a report per second: the start time moves), in
        # case the controller sees the pod's update before the node's.

        def recounted() -> bool:
            kube.make_ready(ns, pod)
            status = kube.api("GET", f"/apis/apps/v1/namespaces/{ns}/daemonsets/agent")["status"]
            return status.get("numberMisscheduled") == 1 and not status.get("desiredNumberScheduled")

        wait_for(recounted, "the daemon pod counted as misscheduled")
    else:
        kube.make_ready(ns, pod)
        _daemon_status(kube, ns, desiredNumberScheduled=1, numberAvailable=1)


def _end_job_pod(kube: Kube, ns: str, pod: dict[str, Any], failed: bool) -> None:
    """What the kubelet writes when the job's container exits: 3 (Failed) or 0 (Succeeded)."""
    term = {
        "reason": "Error" if failed else "Completed",
        "exitCode": 3 if failed else 0,
        "startedAt": now(),
        "finishedAt": now(),
    }
    status = {
        "phase": "Failed" if failed else "Succeeded",
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": term},
            }
            for c in pod["spec"]["containers"]
        ],
    }
    kube.set_pod_status(ns, pod["metadata"]["name"], status)


def _job_condition(kube: Kube, ns: str, name: str, wanted: str) -> None:
    wait_for(
        lambda: any(
            c["type"] == wanted and c["status"] == "True"
            for c in kube.api("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{name}")["status"].get("conditions", [])
        ),
        f"job {wanted}",
    )


def _report_job(kube: Kube, ns: str, backoff_limit: int) -> dict[str, Any]:
    kube.create(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {
            "metadata": {"name": "report"},
            "spec": {
                "backoffLimit": backoff_limit,
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": "shop/report:1"}]}
                },
            },
        },
    )
    return kube.wait_pods(ns, "job-name=report", 1)[0]


def job_failed(kube: Kube, ns: str, broken: bool) -> None:
    _end_job_pod(kube, ns, _report_job(kube, ns, backoff_limit=0), failed=broken)
    _job_condition(kube, ns, "report", "Failed" if broken else "Complete")


def job_backoff(kube: Kube, ns: str, broken: bool) -> None:
    _end_job_pod(kube, ns, _report_job(kube, ns, backoff_limit=4), failed=broken)
    if broken:  # one failed pod; the controller retries after its back-off (the new pod never runs: no kubelet)
        wait_for(
            lambda: kube.api("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/report")["status"].get("failed") == 1,
            "the job to count the failure",
        )
    else:
        _job_condition(kube, ns, "report", "Complete")


def _cronjob(kube: Kube, ns: str, schedule: str = "0 3 * * *", **spec: Any) -> dict[str, Any]:
    return kube.create(
        f"/apis/batch/v1/namespaces/{ns}/cronjobs",
        {
            "metadata": {"name": "nightly"},
            "spec": {
                "schedule": schedule,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
                        },
                    }
                },
                **spec,
            },
        },
    )


def cron_schedule(kube: Kube, ns: str, broken: bool) -> None:
    _cronjob(kube, ns, "0 0 30 2 *" if broken else "0 0 28 2 *")


def cron_last_failed(kube: Kube, ns: str, broken: bool) -> None:
    cj = _cronjob(kube, ns)
    # `kubectl create job nightly-manual --from=cronjob/nightly`: a run now, controlled by the CronJob
    kube.create(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {
            "metadata": {
                "name": "nightly-manual",
                "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": "nightly",
                        "uid": cj["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": cj["spec"]["jobTemplate"]["spec"],
        },
    )
    _end_job_pod(kube, ns, kube.wait_pods(ns, "job-name=nightly-manual", 1)[0], failed=broken)
    _job_condition(kube, ns, "nightly-manual", "Failed" if broken else "Complete")


def cron_suspended(kube: Kube, ns: str, broken: bool) -> None:
    _cronjob(kube, ns, suspend=broken)


def selector_typo(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", replicas=2)
    kube.service(ns, "web", selector={"app": "wbe" if broken else "web"})


def target_port(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", replicas=2)
    kube.service(ns, "web", target="metrics" if broken else "http")


def _ingress(kube: Kube, ns: str, service: str = "web", port: dict[str, Any] | None = None, **spec: Any) -> None:
    """Ingress shop: shop.example.com/ to `service` (port 80 by default), class nginx unless `spec` says."""
    backend = {"service": {"name": service, "port": port or {"number": 80}}}
    kube.create(
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
        {
            "metadata": {"name": "shop"},
            "spec": {
                "ingressClassName": INGRESS_CLASS,
                **spec,
                "rules": [
                    {
                        "host": "shop.example.com",
                        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                    }
                ],
            },
        },
    )


def ingress_backend(kube: Kube, ns: str, broken: bool) -> None:
    _web(kube, ns)
    _ingress(kube, ns, "web-frontend" if broken else "web")


def ingress_port(kube: Kube, ns: str, broken: bool) -> None:
    _web(kube, ns)
    _ingress(kube, ns, port={"number": 8080 if broken else 80})  # 8080: the container's port, not the Service's


def ingress_class(kube: Kube, ns: str, broken: bool) -> None:
    _web(kube, ns)
    _ingress(kube, ns, ingressClassName="nginx-internal" if broken else INGRESS_CLASS)


def ingress_tls(kube: Kube, ns: str, broken: bool) -> None:
    _web(kube, ns)
    if not broken:
        kube.create(
            f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": "shop-tls"}, "type": "Opaque", "data": {}}
        )
    _ingress(kube, ns, tls=[{"hosts": ["shop.example.com"], "secretName": "shop-tls"}])


def deny_all(kube: Kube, ns: str, broken: bool) -> None:
    _web(kube, ns)
    ingress = [] if broken else [{"ports": [{"port": 8080}]}]
    kube.create(
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
        {"metadata": {"name": "lockdown"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": ingress}},
    )


def netpol_no_pods(kube: Kube, ns: str, broken: bool) -> None:
    _web(kube, ns)
    selector = {"matchLabels": {"app": "wbe" if broken else "web"}}
    kube.create(
        f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
        {
            "metadata": {"name": "web-ingress"},
            "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 8080}]}]},
        },
    )


def _storage_class(kube: Kube, ns: str, name: str, provisioner: str, binding: str = "Immediate") -> None:
    """A StorageClass; cluster-scoped, so labelled with the scenario's namespace for `cleanup`."""
    kube.create(
        "/apis/storage.k8s.io/v1/storageclasses",
        {
            "metadata": {"name": name, "labels": {"scenario": ns}},
            "provisioner": provisioner,
            "volumeBindingMode": binding,
        },
    )


def _pv(kube: Kube, ns: str, cls: str, source: dict[str, Any] | None = None, **spec: Any) -> None:
    """PersistentVolume pv-<ns> of 1Gi in class `cls`, on a host path unless `source` says otherwise."""
    kube.create(
        "/api/v1/persistentvolumes",
        {
            "metadata": {"name": f"pv-{ns}"},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": cls,
                **(source or {"hostPath": {"path": "/tmp/x"}}),
                **spec,
            },
        },
    )


def _claim(kube: Kube, ns: str, cls: str, size: str = "1Gi", bound: bool = False) -> None:
    """PersistentVolumeClaim data; with `bound`, wait for the PV controller to bind it."""
    kube.create(
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": cls,
                "resources": {"requests": {"storage": size}},
            },
        },
    )
    if bound:
        wait_for(
            lambda: (
                kube.api("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")["status"].get("phase")
                == "Bound"
            ),
            "claim bound",
        )


def pvc_class(kube: Kube, ns: str, broken: bool) -> None:
    if not broken:
        _pv(kube, ns, "", claimRef={"namespace": ns, "name": "data"})
    _claim(kube, ns, "fast-ssd" if broken else "", bound=not broken)


def pvc_no_pv(kube: Kube, ns: str, broken: bool) -> None:
    _pv(kube, ns, f"manual-{ns}")
    _claim(kube, ns, f"manual-{ns}", "10Gi" if broken else "1Gi", bound=not broken)


def pvc_provisioning(kube: Kube, ns: str, broken: bool) -> None:
    # local volumes are never provisioned: their class must wait for the first consumer (then the scheduler
    # picks a PV); with Immediate binding the PV controller tries to provision and has no plugin for it
    binding = "Immediate" if broken else "WaitForFirstConsumer"
    _storage_class(kube, ns, "local-storage", "kubernetes.io/no-provisioner", binding)
    _claim(kube, ns, "local-storage")
    wanted = "ProvisioningFailed" if broken else "WaitForFirstConsumer"
    wait_for(
        lambda: any(
            e["reason"] == wanted and e["involvedObject"]["name"] == "data"
            for e in kube.api("GET", f"/api/v1/namespaces/{ns}/events")["items"]
        ),
        f"the PV controller's {wanted} event",
    )


def pod_pvc_unbound(kube: Kube, ns: str, broken: bool) -> None:
    # the class names an external provisioner that is not installed: nothing ever creates the volume
    _storage_class(kube, ns, "nfs-client", "cluster.local/nfs-subdir-external-provisioner")
    if not broken:  # the volume the provisioner would have created
        _pv(kube, ns, "nfs-client", claimRef={"namespace": ns, "name": "data"})
    _claim(kube, ns, "nfs-client", bound=not broken)
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    kube.deploy(ns, "web", replicas=1, ready=not broken, wait=not broken, pod_spec={"volumes": volumes})
    if broken:
        _wait_unschedulable(kube, ns)


def pv_released(kube: Kube, ns: str, broken: bool) -> None:
    pvc_no_pv(kube, ns, broken=False)
    if broken:
        kube.api("DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
        wait_for(
            lambda: kube.api("GET", f"/api/v1/persistentvolumes/pv-{ns}")["status"].get("phase") == "Released",
            "volume released",
        )


def pv_failed(kube: Kube, ns: str, broken: bool) -> None:
    # a static NFS volume with reclaimPolicy Delete: once its claim is gone, no volume plugin can delete it
    nfs = {"nfs": {"server": "nfs.example.com", "path": "/exports/shop"}}
    _pv(kube, ns, f"manual-{ns}", nfs, persistentVolumeReclaimPolicy="Delete")
    _claim(kube, ns, f"manual-{ns}", bound=True)
    if broken:
        kube.api("DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")
        wait_for(
            lambda: kube.api("GET", f"/api/v1/persistentvolumes/pv-{ns}")["status"].get("phase") == "Failed",
            "volume reclamation failed",
        )


def _scenario_node(kube: Kube, ns: str, ready: bool = True) -> str:
    """A fake node of the scenario's own, tainted so no other pod lands there; `cleanup` deletes it."""
    node = f"n-{ns}"
    taints = [{"key": "scenario", "value": ns, "effect": "NoSchedule"}]
    kube.control_plane.add_node(node, ready=ready, taints=taints)
    return node


def _agent_on(kube: Kube, ns: str, node: str) -> None:
    """Pod agent, bound to `node` and Ready."""
    kube.create(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "agent"},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox"}]},
        },
    )
    kube.make_ready(ns, kube.api("GET", f"/api/v1/namespaces/{ns}/pods/agent"))


def node_not_ready(kube: Kube, ns: str, broken: bool) -> None:
    _agent_on(kube, ns, _scenario_node(kube, ns, ready=not broken))


def node_cordoned(kube: Kube, ns: str, broken: bool) -> None:
    node = _scenario_node(kube, ns)
    _agent_on(kube, ns, node)
    if broken:  # `kubectl cordon`, and nobody uncordoned it after the maintenance
        kube.patch(f"/api/v1/nodes/{node}", {"spec": {"unschedulable": True}})


def _hpa(kube: Kube, ns: str, target: str = "web", max_replicas: int = 5) -> None:
    """HPA web: Deployment `target`, 1..max_replicas, 70% CPU."""
    kube.create(
        f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
        {
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": 1,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    }
                ],
            },
        },
    )


def _hpa_status(kube: Kube, ns: str, replicas: int, desired: int, utilization: int, limited: bool) -> None:
    """The status the HPA controller writes when metrics-server answers. This control plane has none, so its
    first sync (15 s after the HPA's creation) replaces the ScalingActive condition with a failure: diagnose
    before that."""

    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": kind, "status": status, "lastTransitionTime": now(), "reason": reason, "message": message}

    kube.patch(
        f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/web/status",
        {
            "status": {
                "currentReplicas": replicas,
                "desiredReplicas": desired,
                "currentMetrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "current": {"averageUtilization": utilization, "averageValue": f"{utilization}m"},
                        },
                    }
                ],
                "conditions": [
                    cond("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size"),
                    cond(
                        "ScalingActive",
                        "True",
                        "ValidMetricFound",
                        "the HPA was able to successfully calculate a replica count from cpu resource utilization "
                        "(percentage of request)",
                    ),
                    cond(
                        "ScalingLimited",
                        "True",
                        "TooManyReplicas",
                        "the desired replica count is more than the maximum replica count",
                    )
                    if limited
                    else cond(
                        "ScalingLimited",
                        "False",
                        "DesiredWithinRange",
                        "the desired count is within the acceptable range",
                    ),
                ],
            }
        },
    )


def hpa_target(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", container={"resources": {"requests": {"cpu": "100m"}}})
    _hpa(kube, ns, "webapp" if broken else "web")


def hpa_requests(kube: Kube, ns: str, broken: bool) -> None:
    resources = {} if broken else {"requests": {"cpu": "100m"}}
    kube.deploy(ns, "web", container={"resources": resources})
    _hpa(kube, ns)


def hpa_metrics(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", container={"resources": {"requests": {"cpu": "100m"}}})
    _hpa(kube, ns)
    if broken:  # no metrics-server: the controller's first sync, 15 s after creation, gets no pod metrics
        wait_for(
            lambda: any(
                c["type"] == "ScalingActive" and c["status"] == "False"
                for c in kube.api("GET", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/web")
                .get("status", {})
                .get("conditions", [])
            ),
            "the HPA controller to report the missing metrics",
            timeout=60,
        )
    else:
        _hpa_status(kube, ns, replicas=1, desired=1, utilization=40, limited=False)


def hpa_at_max(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", replicas=3, container={"resources": {"requests": {"cpu": "100m"}}})
    _hpa(kube, ns, max_replicas=3 if broken else 6)
    # 180% of the request wants 8 replicas, held at 3; 65% wants 3, within range
    _hpa_status(kube, ns, replicas=3, desired=3, utilization=180 if broken else 65, limited=broken)


def _pdb(kube: Kube, ns: str, app: str, min_available: int, expected_pods: int) -> None:
    """PDB web selecting app=`app`, once the disruption controller has counted its pods."""
    kube.create(
        f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
        {
            "metadata": {"name": "web"},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
        },
    )

    def counted() -> bool:
        status = kube.api("GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/web").get("status", {})
        return status.get("observedGeneration") == 1 and status.get("expectedPods") == expected_pods

    wait_for(counted, "PDB status")


def pdb_zero(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", replicas=2)
    _pdb(kube, ns, "web", 2 if broken else 1, expected_pods=2)


def pdb_no_pods(kube: Kube, ns: str, broken: bool) -> None:
    kube.deploy(ns, "web", replicas=2)
    _pdb(kube, ns, "wbe" if broken else "web", 1, expected_pods=0 if broken else 2)


# -- Istio scenarios ---------------------------------------------------------------------------------------
PROXY = {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'}


def _mesh_app(kube: Kube, ns: str, inject: bool = True, sidecars: bool = True) -> None:
    """Namespace labelled for injection, Deployment web (version v1) with sidecars, Service web."""
    if inject:
        kube.patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"istio-injection": "enabled"}}})
    annotations = PROXY if sidecars else {}
    kube.create(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "version": "v1"}, "annotations": annotations},
                    "spec": {
                        "containers": [{"name": "app", "image": "shop/web:1.0", "ports": [{"containerPort": 8080}]}]
                    },
                },
            },
        },
    )
    for p in kube.wait_pods(ns, "app=web", 2):
        kube.make_ready(ns, p)
    kube.service(ns, "web")


def _istio(kube: Kube, ns: str, plural: str, body: dict[str, Any], group: str = "networking.istio.io") -> None:
    kind = next(k for g, p, k, _ in CRDS if (g, p) == (group, plural))
    kube.create(f"/apis/{group}/v1/namespaces/{ns}/{plural}", {"apiVersion": f"{group}/v1", "kind": kind, **body})


def _vs(
    name: str, dest: dict[str, Any], gateways: list[str] | None = None, hosts: list[str] | None = None, ns: str = ""
) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": hosts or [f"{ns}.example.com"], "http": [{"route": [{"destination": dest}]}]}
    if gateways is not None:
        spec["gateways"] = gateways
    return {"metadata": {"name": name}, "spec": spec}


def _dr(
    name: str = "web", host: str = "web", subsets: list[dict[str, Any]] | None = None, tls: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": host, "subsets": subsets or [{"name": "v1", "labels": {"version": "v1"}}]}
    if tls:
        spec["trafficPolicy"] = {"tls": {"mode": tls}}
    return {"metadata": {"name": name}, "spec": spec}


def vs_gateway(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    _istio(
        kube,
        ns,
        "virtualservices",
        _vs("web", {"host": "web"}, [f"{MESH_NAMESPACE}/{'shop-gateway' if broken else 'shop-gw'}"], ns=ns),
    )


def vs_host(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    _istio(
        kube,
        ns,
        "virtualservices",
        _vs("web", {"host": "web-v2" if broken else "web"}, [f"{MESH_NAMESPACE}/shop-gw"], ns=ns),
    )


def vs_subset(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    _istio(kube, ns, "destinationrules", _dr())
    _istio(kube, ns, "virtualservices", _vs("web", {"host": "web", "subset": "v2" if broken else "v1"}, hosts=["web"]))


def dr_subset_pods(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    _istio(
        kube, ns, "destinationrules", _dr(subsets=[{"name": "v1", "labels": {"version": "v1.0" if broken else "v1"}}])
    )


def gateway_credential(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    gw = {
        "metadata": {"name": f"gw-{ns}"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": [f"{ns}.example.net"],  # not under the fixture gateway's *.example.com (IST0138)
                    "tls": {"mode": "SIMPLE", "credentialName": "missing-cert" if broken else "shop-cert"},
                }
            ],
        },
    }
    _istio(kube, ns, "gateways", gw)


def gateway_selector(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    gw = {
        "metadata": {"name": f"gw-{ns}"},
        "spec": {
            "selector": {"istio": "ingress" if broken else "ingressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": [f"{ns}.example.com"]}],
        },
    }
    _istio(kube, ns, "gateways", gw)


def vs_conflict(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    _istio(kube, ns, "virtualservices", _vs("web", {"host": "web"}, hosts=["web"]))
    if broken:
        _istio(kube, ns, "virtualservices", _vs("web-canary", {"host": "web"}, hosts=["web"]))


def mtls_conflict(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    _istio(
        kube,
        ns,
        "peerauthentications",
        {"metadata": {"name": "default"}, "spec": {"mtls": {"mode": "STRICT"}}},
        group="security.istio.io",
    )
    _istio(kube, ns, "destinationrules", _dr(tls="DISABLE" if broken else "ISTIO_MUTUAL"))


def dr_without_host(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    rule = _dr()
    if broken:  # the CRD schema accepts it; istiod's validation (and so its analyzer) does not
        del rule["spec"]["host"]
    _istio(kube, ns, "destinationrules", rule)


def dr_tls_unverified(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    rule = _dr(tls="SIMPLE")
    if not broken:
        rule["spec"]["trafficPolicy"]["tls"]["caCertificates"] = "/etc/certs/upstream-ca.pem"
    _istio(kube, ns, "destinationrules", rule)


def policy_selects_nothing(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns)
    policy = {
        "metadata": {"name": "web-allow"},
        "spec": {
            "selector": {"matchLabels": {"app": "wbe" if broken else "web"}},
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"namespaces": [ns]}}]}],
        },
    }
    _istio(kube, ns, "authorizationpolicies", policy, group="security.istio.io")


def namespace_not_injected(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns, inject=not broken, sidecars=not broken)
    _istio(kube, ns, "destinationrules", _dr())


def pod_missing_proxy(kube: Kube, ns: str, broken: bool) -> None:
    _mesh_app(kube, ns, sidecars=not broken)


def port_name(kube: Kube, ns: str, broken: bool) -> None:
    kube.patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"istio-injection": "enabled"}}})
    kube.deploy(ns, "web", replicas=1, wait=False)
    pods = kube.wait_pods(ns, "app=web", 1)
    # sidecar status annotations cannot be added after creation by a status patch: patch the metadata
    for p in pods:
        kube.patch(f"/api/v1/namespaces/{ns}/pods/{p['metadata']['name']}", {"metadata": {"annotations": PROXY}})
        kube.make_ready(ns, p)
    kube.service(ns, "web", port_name="web" if broken else "http-web")


SCENARIOS: list[Scenario] = [  # the 62 scenarios before coverage work (issue 15); the newer ones: scenarios/
    Scenario("crashloop", "POD_CRASHLOOP", crashloop, {"last_termination": "Error (exit 1)", "restarts": 5}),
    Scenario("oomkilled", "POD_OOMKILLED", oomkilled, {"memory_limit": "128Mi"}),
    Scenario(
        "bad-image-rollout",
        "POD_IMAGE_NOT_FOUND",
        bad_image_rollout,
        {"image": "shop/web:2.0-typo", "failing_revision": 2, "previous_revision": 1},
    ),
    Scenario("pull-secret-missing", "POD_PULL_SECRET_MISSING", pull_secret_missing, {"missing_secrets": ["regcred"]}),
    Scenario("registry-auth", "POD_REGISTRY_AUTH", registry_auth),
    Scenario("configmap-missing", "POD_CONFIG_MISSING", config_missing, {"missing": ["ConfigMap app-config"]}),
    Scenario("insufficient-cpu", "POD_INSUFFICIENT_RESOURCES", insufficient_cpu, {"requests": {"cpu": "64"}}),
    Scenario("node-selector", "POD_NODE_AFFINITY_MISMATCH", node_selector, {"node_selector": {"disktype": "nvme"}}),
    Scenario("taint", "POD_TAINT_NOT_TOLERATED", taint),
    Scenario("topology-spread", "POD_UNSCHEDULABLE", topology_spread, {"pod_status": "Pending"}),
    Scenario("pod-pvc-unbound", "POD_PVC_UNBOUND", pod_pvc_unbound, {"claims": ["data"]}),
    Scenario("liveness-404", "POD_PROBE_BAD_TARGET", liveness_404, {"probe": "liveness", "container_ports": [8080]}),
    Scenario("readiness-aggressive", "POD_PROBE_AGGRESSIVE", readiness_aggressive, {"probe": "readiness"}),
    Scenario("stuck-terminating", "POD_STUCK_TERMINATING", stuck_terminating, {"finalizers": ["example.com/cleanup"]}),
    Scenario("pod-restarting", "POD_RESTARTING", pod_restarting, {"restarts": 7, "last_termination": "Error (exit 2)"}),
    Scenario("rollout-stuck", "DEPLOY_ROLLOUT_STUCK", rollout_stuck),
    Scenario("quota", "QUOTA_EXCEEDED", quota, {"quota": "pods"}, subject="ResourceQuota"),
    Scenario("sts-service", "STS_SERVICE_MISSING", sts_service, {"serviceName": "db"}),
    Scenario("sts-not-headless", "STS_SERVICE_NOT_HEADLESS", sts_not_headless, {"serviceName": "db"}),
    Scenario(
        "sts-unavailable",
        "STS_UNAVAILABLE",
        sts_unavailable,
        {"desired": 1, "ready": 0, "pod_states": {"ContainerCreating": 1}},
    ),
    Scenario(
        "ds-unavailable",
        "DS_UNAVAILABLE",
        ds_unavailable,
        {"numberUnavailable": 1, "pod_states": {"ContainerCreating": 1}},
    ),
    Scenario(
        "ds-misscheduled", "DS_MISSCHEDULED", ds_misscheduled, {"numberMisscheduled": 1, "desiredNumberScheduled": 0}
    ),
    Scenario("job-failed", "JOB_FAILED", job_failed, {"reason": "BackoffLimitExceeded"}),
    Scenario("job-backoff", "JOB_BACKOFF", job_backoff, {"failed": 1, "backoffLimit": 4}),
    Scenario("cron-schedule", "CRONJOB_INVALID_SCHEDULE", cron_schedule, {"schedule": "0 0 30 2 *"}),
    Scenario(
        "cron-last-failed",
        "CRONJOB_LAST_FAILED",
        cron_last_failed,
        {"job": "nightly-manual", "reason": "BackoffLimitExceeded"},
    ),
    Scenario("cron-suspended", "CRONJOB_SUSPENDED", cron_suspended, {"suspend": True}),
    Scenario("selector-typo", "SVC_SELECTOR_NO_PODS", selector_typo, {"selector": {"app": "wbe"}}),
    Scenario("target-port", "SVC_TARGET_PORT_MISMATCH", target_port, {"targetPort": "metrics"}),
    Scenario("ingress-backend", "INGRESS_BACKEND_MISSING", ingress_backend, {"service": "web-frontend"}),
    Scenario(
        "ingress-port",
        "INGRESS_BACKEND_PORT_MISSING",
        ingress_port,
        {"service": "web", "port": 8080, "service_ports": ["http"]},
    ),
    Scenario("ingress-class", "INGRESS_CLASS_MISSING", ingress_class, {"ingressClassName": "nginx-internal"}),
    Scenario("ingress-tls", "INGRESS_TLS_SECRET_MISSING", ingress_tls, {"secretName": "shop-tls"}),
    Scenario("deny-all", "NETPOL_DENIES_SERVICE", deny_all, {"policies": ["lockdown"]}),
    Scenario("netpol-no-pods", "NETPOL_NO_PODS", netpol_no_pods, {"podSelector": {"matchLabels": {"app": "wbe"}}}),
    Scenario("pvc-class", "PVC_STORAGECLASS_MISSING", pvc_class, {"storageClassName": "fast-ssd"}),
    Scenario("pvc-no-pv", "PVC_NO_MATCHING_PV", pvc_no_pv, summary_has="no StorageClass"),
    Scenario(
        "pvc-provisioning",
        "PVC_PROVISIONING_FAILED",
        pvc_provisioning,
        {"storageClassName": "local-storage"},
        summary_has="kubernetes.io/no-provisioner",
    ),
    Scenario("pv-released", "PV_RELEASED", pv_released),
    Scenario(
        "pv-failed",
        "PV_FAILED",
        pv_failed,
        {"phase": "Failed", "reclaimPolicy": "Delete"},
        summary_has="no deletable volume plugin matched",
    ),
    Scenario("node-not-ready", "NODE_NOT_READY", node_not_ready, {"pods": 1}),
    Scenario("node-cordoned", "NODE_CORDONED", node_cordoned, {"unschedulable": True, "pods": 1}),
    Scenario("hpa-target", "HPA_TARGET_MISSING", hpa_target),
    Scenario("hpa-requests", "HPA_MISSING_REQUESTS", hpa_requests, {"missing": {"app": ["cpu"]}}),
    Scenario("hpa-metrics", "HPA_METRICS_UNAVAILABLE", hpa_metrics, {"reason": "FailedGetResourceMetric"}),
    Scenario("hpa-at-max", "HPA_AT_MAX", hpa_at_max, {"maxReplicas": 3, "desired": 3, "limited": "TooManyReplicas"}),
    Scenario("pdb-zero", "PDB_BLOCKS_DISRUPTIONS", pdb_zero, {"disruptionsAllowed": 0}),
    Scenario(
        "pdb-no-pods", "PDB_NO_PODS", pdb_no_pods, {"expectedPods": 0, "selector": {"matchLabels": {"app": "wbe"}}}
    ),
    Scenario("vs-gateway", "IST0101", vs_gateway, summary_has="Referenced gateway not found", mesh=True),
    Scenario("vs-host", "IST0101", vs_host, summary_has="Referenced host not found: web-v2", mesh=True),
    Scenario("vs-subset", "IST0101", vs_subset, summary_has="web+v2", mesh=True),
    Scenario("dr-subset-pods", "ISTIO_SUBSET_NO_PODS", dr_subset_pods, {"pod_labels": ["version=v1"]}, mesh=True),
    Scenario(
        "gateway-credential",
        "IST0101",
        gateway_credential,
        {"looked_in": [MESH_NAMESPACE]},
        summary_has="credentialName",
        mesh=True,
    ),
    Scenario("gateway-selector", "IST0101", gateway_selector, summary_has="selector", mesh=True),
    Scenario("vs-conflict", "IST0109", vs_conflict, mesh=True),
    Scenario("mtls-conflict", "IST0113", mtls_conflict, {"mtls_mode": "STRICT"}, mesh=True),
    Scenario("dr-without-host", "IST0106", dr_without_host, {"spec.host": None}, mesh=True),
    Scenario("dr-tls-unverified", "IST0128", dr_tls_unverified, {"tls": {"mode": "SIMPLE"}}, mesh=True),
    Scenario("policy-selects-nothing", "IST0127", policy_selects_nothing, {"selector": {"app": "wbe"}}, mesh=True),
    Scenario("namespace-not-injected", "IST0102", namespace_not_injected, mesh=True),
    Scenario("pod-missing-proxy", "IST0103", pod_missing_proxy, mesh=True),
    Scenario("port-name", "IST0118", port_name, mesh=True),
]


def cleanup(kube: Kube, ns: str) -> None:
    """What a namespace deletion leaves behind: finalizers, cluster-scoped PVs, scenario nodes, and the
    cluster-scoped objects labelled scenario=<namespace>."""
    for name in ("worker",):
        path = f"/api/v1/namespaces/{ns}/pods/{name}"
        if kube.exists(path):
            kube.patch(path, {"metadata": {"finalizers": None}})
    for cm in kube.api("GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]:
        if cm["metadata"].get("finalizers"):
            kube.patch(
                f"/api/v1/namespaces/{ns}/configmaps/{cm['metadata']['name']}", {"metadata": {"finalizers": None}}
            )
    if kube.exists(f"/api/v1/persistentvolumes/pv-{ns}"):
        kube.api("DELETE", f"/api/v1/persistentvolumes/pv-{ns}")
    if kube.exists(f"/api/v1/nodes/n-{ns}"):
        kube.api("DELETE", f"/api/v1/nodes/n-{ns}")
    for base in LABELLED_CLUSTER_KINDS:
        if not kube.exists(base):
            continue
        for obj in kube.api("GET", f"{base}?labelSelector=scenario={ns}")["items"]:
            kube.api("DELETE", f"{base}/{obj['metadata']['name']}")


# Cluster-scoped kinds a builder may create; it labels them scenario=<namespace> so cleanup finds them.
LABELLED_CLUSTER_KINDS = (
    "/apis/storage.k8s.io/v1/storageclasses",
    "/apis/scheduling.k8s.io/v1/priorityclasses",
    "/apis/node.k8s.io/v1/runtimeclasses",
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    "/apis/gateway.networking.k8s.io/v1/gatewayclasses",
    "/api/v1/nodes",
    "/api/v1/persistentvolumes",
)
