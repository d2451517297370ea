"""In-cluster mode on the real test control plane, with the chart's own RBAC.

The chart is rendered (values-write.yaml); its ServiceAccount, read-only ClusterRole and bindings are applied for
real; a token for that ServiceAccount comes from the TokenRequest API and sits, with the cluster's CA and the
namespace, in a folder laid out like /var/run/secrets/kubernetes.io/serviceaccount. CloudPilot then runs as a pod
runs it: the `cloudpilot` entry point over streamable HTTP with the chart's settings file (--config), finding the API
server through KUBERNETES_SERVICE_HOST/PORT and no kubeconfig at all. Every cluster-facing read tool answers
without a permission error (only Secrets stay unread: the chart never grants them by default); a change is refused
with the missing permission named; once the chart's write role is bound, the fix loop plans, applies and verifies.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from tests.cluster.controlplane import ControlPlane
from tests.deploy.helm import EXAMPLES, Manifest, as_yaml, find, kubectl, render, settings_file
from tests.fix.scenarios import SCENARIOS, bad_probe_path, deployment, kubelet, newest_pods, wait_for
from tests.prom.harness import PrometheusServer, openmetrics
from tests.serving import free_port
from tests.tools.conftest_istio import mesh  # noqa: F401 (the session fixture installing the Istio CRDs)
from tools.catalogue import load_all

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

LOG_LINE = "GET /orders 200 12ms"
LOAD_STEP = 60.0


@dataclass
class InCluster:
    """CloudPilot serving from the chart's identity, and what it looks at."""

    url: str  # the MCP endpoint
    release: str  # the release namespace (the ServiceAccount's)
    app: str  # the namespace of the workload `web`, where the write role gets bound
    subject: str  # system:serviceaccount:<release>:<name>
    token: str  # the ServiceAccount's token, for checking what it may do
    objects: list[Manifest]  # the rendered chart
    pods: list[str]
    control_plane: ControlPlane
    log: Path  # the server's stderr


@pytest.fixture(scope="module")
def incluster(cluster, mesh, tmp_path_factory) -> Iterator[InCluster]:  # noqa: F811 (mesh is the fixture)
    cp = cluster.require_control_plane()
    tag = uuid.uuid4().hex[:8]
    release, app = f"cp-{tag}", f"app-{tag}"
    work = tmp_path_factory.mktemp("incluster")
    with contextlib.ExitStack() as stack:
        for ns in (release, app):
            cp.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            stack.callback(_delete_namespace, cp, ns)
        objects = render(
            "cloudpilot",
            release,
            [EXAMPLES / "values-write.yaml"],
            # the test's client reaches the server on loopback: no OIDC issuer to fetch tokens from
            # one pod, as the test runs it: a stateful MCP session, so the fix loop can ask the user (elicitation)
            ["auth.oidc.issuer=", f"rbac.write.namespaces={{{app}}}", "replicaCount=1", "autoscaling.enabled=false"],
        )
        stack.callback(_delete_cluster_objects, cluster.kubeconfig, objects)
        apply(cluster.kubeconfig, [o for o in objects if o["kind"] in IDENTITY and not _writes(o)])
        account = find(objects, "ServiceAccount")["metadata"]["name"]
        token = cp.api(
            "POST",
            f"/api/v1/namespaces/{release}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}},
        )["status"]["token"]
        wait_for(lambda: _may(cp, token, "list", "", "pods", None), "the read-only ClusterRole to take effect")

        pods = _seed(cp, app)
        stack.callback(_drop_metrics_api, cp)
        prom = stack.enter_context(PrometheusServer(_load_history(app)))

        folder = work / "serviceaccount"  # as the kubelet mounts it into a pod
        folder.mkdir()
        (folder / "token").write_text(token)
        shutil.copy(cp.dir / "pki" / "ca.crt", folder / "ca.crt")
        (folder / "namespace").write_text(release)
        config = work / "settings.yaml"  # the ConfigMap's file, as mounted at /etc/cloudpilot/settings.yaml
        config.write_text(settings_file(objects))
        data = work / "data"  # the data volume
        data.mkdir()
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(data),  # no kubeconfig anywhere: the service account is the only way in
            "TMPDIR": str(work),
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(cp.port),
            "CLOUDPILOT_K8S__SERVICE_ACCOUNT_DIR": str(folder),
            "CLOUDPILOT_STORE__PATH": str(data / "cloudpilot.db"),
            "CLOUDPILOT_AGENTS__CHECKPOINT_PATH": str(data / "threads.db"),
            "CLOUDPILOT_PROMETHEUS__URL": prom.url,
        }
        log = work / "server.log"
        entry = Path(sys.executable).parent / "cloudpilot"  # the image's entry point, bound to loopback here
        with log.open("wb") as err:
            server = subprocess.Popen(
                [
                    str(entry),
                    "--transport",
                    "http",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--config",
                    str(config),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        stack.callback(_stop, server)
        wait_for(lambda: _ready(port) or server.poll() is not None, "the server's /readyz", timeout=90)
        assert server.poll() is None, log.read_text()[-3000:]
        yield InCluster(
            f"http://127.0.0.1:{port}/mcp",
            release,
            app,
            f"system:serviceaccount:{release}:{account}",
            token,
            objects,
            pods,
            cp,
            log,
        )


IDENTITY = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")  # what is applied


def _writes(obj: Manifest) -> bool:
    """The chart's write ClusterRole or one of its bindings."""
    return obj["metadata"]["name"].endswith("-write")


def apply(kubeconfig: Path, objects: list[Manifest]) -> None:
    done = kubectl(kubeconfig, "apply", "-f", "-", stdin=as_yaml(objects))
    assert done.returncode == 0, done.stderr


def _delete_cluster_objects(kubeconfig: Path, objects: list[Manifest]) -> None:
    cluster_scoped = [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    kubectl(kubeconfig, "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=as_yaml(cluster_scoped))


def _delete_namespace(cp: ControlPlane, ns: str) -> None:
    with contextlib.suppress(RuntimeError):
        cp.api("DELETE", f"/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0")
        cp.api("DELETE", f"/api/v1/namespaces/{ns}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _may(cp: ControlPlane, token: str, verb: str, group: str, resource: str, namespace: str | None) -> bool:
    """Whether the token's identity may do this, as the API server's authorizer says (SelfSubjectAccessReview)."""
    attributes = {"verb": verb, "group": group, "resource": resource, "namespace": namespace or ""}
    review = cp.api(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {"spec": {"resourceAttributes": attributes}},
        token=token,
    )
    return bool(review["status"].get("allowed"))


# -- what the tools look at ---------------------------------------------------------------------------------------
def _seed(cp: ControlPlane, ns: str) -> list[str]:
    """Deployment `web` whose liveness probe hits a path the app does not serve (a finding fix_plan can fix), its
    logs, a Service, an Istio VirtualService, and pod metrics (metrics.k8s.io served by CRDs)."""
    assert cp.kubelet is not None
    bad_probe_path(cp.api, ns)
    pods = [p["metadata"]["name"] for p in newest_pods(cp.api, ns)]
    for pod in pods:
        cp.kubelet.set_log(ns, pod, "app", f"{LOG_LINE}\n" * 3)
    cp.api(
        "POST",
        f"/api/v1/namespaces/{ns}/services",
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    cp.api(
        "POST",
        f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices",
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "web"},
            "spec": {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]},
        },
    )
    _serve_metrics_api(cp)
    for pod in pods:
        cp.api(
            "POST",
            f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            {
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {"name": pod},
                "containers": [{"name": "app", "usage": {"cpu": "120m", "memory": "200Mi"}}],
            },
        )
    return pods


METRICS_CRDS = (("pods", "PodMetrics", "Namespaced"), ("nodes", "NodeMetrics", "Cluster"))


def _serve_metrics_api(cp: ControlPlane) -> None:
    """metrics.k8s.io with metrics-server's shape, served by CRDs (there is no metrics-server here)."""
    for plural, kind, scope in METRICS_CRDS:
        with contextlib.suppress(RuntimeError):  # left by another test: fine
            cp.api(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                {
                    "metadata": {
                        "name": f"{plural}.metrics.k8s.io",
                        "annotations": {"api-approved.kubernetes.io": "unapproved, test double of metrics-server"},
                    },
                    "spec": {
                        "group": "metrics.k8s.io",
                        "scope": scope,
                        "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                        "versions": [
                            {
                                "name": "v1beta1",
                                "served": True,
                                "storage": True,
                                "schema": {
                                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                                },
                            }
                        ],
                    },
                },
            )

    def served() -> bool:
        try:
            cp.api("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
            return True
        except RuntimeError:
            return False

    wait_for(served, "the metrics API")


def _drop_metrics_api(cp: ControlPlane) -> None:
    """Remove the stand-in and wait until it is gone: other tests expect a cluster without metrics-server."""
    for plural, _, _ in METRICS_CRDS:
        with contextlib.suppress(RuntimeError):
            cp.api("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.metrics.k8s.io")

    def gone() -> bool:
        paths = [
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{p}.metrics.k8s.io" for p, _, _ in METRICS_CRDS
        ]
        for path in [*paths, "/apis/metrics.k8s.io/v1beta1"]:
            try:
                cp.api("GET", path)
                return False
            except RuntimeError:
                continue
        return True

    wait_for(gone, "the metrics API stand-in to go away", timeout=60)


def _load_history(ns: str) -> str:
    """Two days of web's request rate at one sample a minute, tripled for the last quarter hour (an incident)."""
    end = float(int(time.time() // LOAD_STEP * LOAD_STEP))
    times = end - LOAD_STEP * np.arange(2 * 24 * 60)[::-1]
    rate = 100.0 + 10.0 * np.sin(times / 3600.0) + np.where(times > end - 900, 200.0, 0.0)
    series = f'web_requests_rate{{namespace="{ns}",service="web"}}'
    return openmetrics({"web_requests_rate": ("gauge", [(series, list(zip(times, rate, strict=True)))])})


# -- the MCP client -----------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def session(url: str) -> AsyncIterator[ClientSession]:
    """An MCP client over streamable HTTP whose user approves what it is asked (MCP elicitation)."""

    async def approve(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"approve": True})

    async with (
        streamable_http_client(url) as (read, write, _),
        ClientSession(read, write, elicitation_callback=approve) as client,
    ):
        await client.initialize()
        yield client


def read_calls(env: InCluster) -> dict[str, dict[str, Any]]:
    """Every cluster-facing read tool with arguments that make it read something."""
    web = {"kind": "Deployment", "name": "web", "namespace": env.app}
    rate = f'web_requests_rate{{namespace="{env.app}"}}'
    return {
        "clusters_list": {},
        "cluster_info": {},
        "cluster_overview": {"force_refresh": True},
        "namespaces_detail": {},
        "nodes_detail": {},
        "api_resources": {},
        "pods_list": {},
        "pod_get": {"name": env.pods[0], "namespace": env.app},
        "pod_logs": {"name": env.pods[0], "namespace": env.app},
        "resources_list": {"kind": "ConfigMap"},
        "resource_get": {"kind": "Service", "name": "web", "namespace": env.app},
        "resource_describe": web,
        "resource_usage": {"namespace": env.app},
        "events_list": {"namespace": env.app},
        "workloads_list": {},
        "rollout_status": web,
        "rollout_history": web,
        "diagnose": {"namespace": env.app},  # cluster-scoped kinds are read for a namespace too
        "istio_analyze": {},
        "istio_list": {"kind": "VirtualService", "all_namespaces": True},
        "istio_get": {"kind": "VirtualService", "name": "web", "namespace": env.app},
        "mesh_overview": {},
        "rca_namespace": {"namespace": env.app, "minutes": 60, "queries": {"requests": rate}},
        "recommend_replicas": {"namespace": env.app, "deployment": "web", "per_replica": 50.0, "query": rate},
        "fleet_overview": {"force_refresh": True},
        "fleet_diagnose": {},
        "fleet_problem_pods": {},
    }


def refusals(answer: str) -> set[str]:
    """The resources an answer says this identity may not read ("may not list secrets ...")."""
    return set(re.findall(r"may not \w+ ([\w./-]+)", answer))


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


# -- the tests ----------------------------------------------------------------------------------------------------
async def test_the_server_acts_as_the_charts_service_account(incluster: InCluster) -> None:
    async with session(incluster.url) as client:
        listed = (await client.call_tool("clusters_list", {})).structuredContent
        info = await client.call_tool("cluster_info", {})
    assert listed is not None and info.structuredContent is not None, text_of(info)
    assert [(c["name"], c["source"], c["default"]) for c in listed["clusters"]] == [("in-cluster", "in-cluster", True)]
    assert info.structuredContent["identity"] == incluster.subject
    assert info.structuredContent["server"] == f"https://127.0.0.1:{incluster.control_plane.port}"
    assert incluster.token not in (text_of(info) + incluster.log.read_text())


async def test_every_read_tool_works_with_the_read_only_cluster_role(incluster: InCluster) -> None:
    calls = read_calls(incluster)
    specs = load_all().values()
    cluster_facing = {
        s.name
        for s in specs
        if s.access == "read" and {"cluster", "clusters"} & set(inspect.signature(s.fn).parameters)
    }
    assert set(calls) == cluster_facing | {"clusters_list"}  # a new read tool must be added here
    assert not _may(incluster.control_plane, incluster.token, "update", "apps", "deployments", incluster.app)
    failed, answers = {}, {}
    async with session(incluster.url) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert set(calls) <= listed
        for name, arguments in calls.items():
            result = await client.call_tool(name, arguments)
            answer = text_of(result) + json.dumps(result.structuredContent)
            answers[name] = result.structuredContent or {}
            if result.isError or refusals(answer) - {"secrets"}:
                failed[name] = answer[:1500]
    assert not failed, json.dumps(failed, indent=1)
    # what each read saw, so that an empty answer cannot pass for a working one
    assert set(answers["cluster_overview"]["errors"]) == {"secrets"}  # never granted: the chart's default
    assert answers["pod_logs"]["text"].count(LOG_LINE) == 3
    assert [r["name"] for r in answers["resource_usage"]["rows"]] == sorted(incluster.pods)
    assert answers["istio_get"]["name"] == "web"
    assert answers["rollout_status"]["done"] is not None
    checked = answers["diagnose"]["checked"]
    assert checked["pods"] >= 2 and checked["nodes"] >= 3 and checked["virtualservices"] == 1, checked
    assert answers["recommend_replicas"]["current"] == 2
    assert answers["rca_namespace"]["candidates"]
    for fleet in ("fleet_overview", "fleet_diagnose", "fleet_problem_pods"):  # the one cluster, answering
        assert [c["cluster"] for c in answers[fleet]["clusters"]] == ["in-cluster"], answers[fleet]
        assert answers[fleet]["unreachable"] == [], answers[fleet]


async def test_a_change_needs_the_write_role_then_the_fix_loop_works(incluster: InCluster) -> None:
    cp, app = incluster.control_plane, incluster.app
    before = deployment(cp.api, app)
    async with session(incluster.url) as client:
        scale = await client.call_tool("scale", {"kind": "Deployment", "name": "web", "namespace": app, "replicas": 3})
        cordon = await client.call_tool("node_cordon", {"name": "node-1", "why": "test"})
    assert scale.isError and cordon.isError
    refused = text_of(scale)
    assert (
        f'Forbidden: identity \'{incluster.subject}\' may not update deployments "web" in namespace "{app}"' in refused
    )
    assert f'verb "update" on resource "deployments" of API group "apps" in namespace "{app}"' in refused
    assert "rbac.write.enabled=true" in refused
    assert 'verb "update" on resource "nodes" of API group "core" cluster-wide' in text_of(cordon)
    assert "ClusterRole rule" in text_of(cordon)
    assert deployment(cp.api, app)["metadata"]["generation"] == before["metadata"]["generation"]

    apply(cp.kubeconfig, [o for o in incluster.objects if o["kind"] in IDENTITY and _writes(o)])
    wait_for(lambda: _may(cp, incluster.token, "update", "apps", "deployments", app), "the write role to take effect")
    assert not _may(cp, incluster.token, "delete", "apps", "deployments", app)  # deletions stay off
    assert not _may(cp, incluster.token, "update", "apps", "deployments", incluster.release)  # only where bound

    scenario = next(s for s in SCENARIOS if s.build is bad_probe_path)
    async with session(incluster.url) as client:
        planned = await client.call_tool("fix_plan", {"namespace": app, "name": "web"})
        assert not planned.isError, text_of(planned)
        plan = planned.structuredContent
        assert plan is not None and [c["actions"] for c in plan["changes"]] == [scenario.actions]
        with kubelet(cp.api, app, "ready"):
            applied = await client.call_tool("fix_apply", {"plan_id": plan["plan_id"], "verify_timeout_seconds": 60})
        assert not applied.isError, text_of(applied)
        audit = await client.call_tool("audit_list", {"plan_id": plan["plan_id"]})
    result = applied.structuredContent
    assert result is not None and result["status"] == "verified", text_of(applied)
    assert "elicitation" in result["approved_by"]
    assert scenario.fixed(deployment(cp.api, app))
    entries = (audit.structuredContent or {})["entries"]
    assert [e["event"] for e in entries][::-1] == ["planned", "approved", "applied", "verified"]
    assert {e["identity"] for e in entries} == {incluster.subject}  # the cluster saw the chart's identity
