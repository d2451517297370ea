"""Cluster registry and access: kubeconfig contexts, clusters an operator registers with `cloudpilot clusters`
(by server URL + token file, or by kubeconfig), and the errors tools give about them."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from cli import clusters as cli
from errors import Forbidden, NotFound, Unreachable
from tests.cluster import states
from tests.cluster.controlplane import ADMIN_TOKEN, VIEWER_TOKEN
from tools import clusters, overview, pods

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def operator(settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """`operator("add", "prod", ...)` runs `cloudpilot clusters ...` in-process against the test runtime's store;
    returns (exit code, stdout + stderr)."""
    config = tmp_path / "cloudpilot.yaml"
    config.write_text(
        yaml.safe_dump(
            {"store": {"path": str(settings.store.path)}, "k8s": {"kubeconfig": str(settings.k8s.kubeconfig)}}
        )
    )

    def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = cli.main([*argv, "--config", str(config)])
        out = capsys.readouterr()
        return code, out.out + out.err

    return run


@pytest.fixture
def credentials(cluster, tmp_path: Path) -> tuple[Path, Path]:
    """(token file, CA file) for the test control plane's admin."""
    cp = cluster.require_control_plane()
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text(ADMIN_TOKEN + "\n")
    ca.write_text((cp.dir / "pki" / "ca.crt").read_text())
    return token, ca


async def test_kubeconfig_contexts_are_listed_with_the_current_default(call):
    listed = await call(clusters.clusters_list)
    by_name = {c.name: c for c in listed.clusters}
    assert by_name["admin"].default and by_name["admin"].source == "kubeconfig"
    assert by_name["viewer"].auth == "user viewer"
    assert listed.kubeconfig_error is None


async def test_cluster_info_reports_version_nodes_and_identity(call, cluster):
    info = await call(clusters.cluster_info)
    assert info.version and info.version.startswith("v1.")
    assert info.nodes_total >= 3 and info.nodes_ready >= 3
    assert info.identity == "kubeconfig user admin"
    assert "nodes" in info.render()


def test_registering_is_not_a_tool():
    assert not hasattr(clusters, "clusters_add") and not hasattr(clusters, "clusters_remove")


async def test_register_by_url_and_token_file_then_use_list_and_remove(call, cluster, operator, credentials):
    cp = cluster.require_control_plane()
    token, ca = credentials
    code, out = operator(
        "add", "prod-eu", "--server", cp.url, "--token-file", str(token), "--ca-file", str(ca), "--description", "eu"
    )
    assert code == 0, out
    assert "Registered cluster 'prod-eu'" in out and "v1.35" in out and ADMIN_TOKEN not in out
    listed = await call(clusters.clusters_list)
    entry = next(c for c in listed.clusters if c.name == "prod-eu")
    assert entry.source == "registry" and entry.auth == "token" and entry.description == "eu"
    assert ADMIN_TOKEN not in listed.model_dump_json() and ADMIN_TOKEN not in listed.render()
    via_registry = await call(pods.pods_list, namespace="kube-system", cluster="prod-eu")
    assert via_registry.cluster == "prod-eu"

    code, out = operator("add", "prod-eu", "--server", cp.url, "--token-file", str(token), "--ca-file", str(ca))
    assert code == 1 and "already registered" in out
    code, out = operator("list")
    assert code == 0 and "prod-eu" in out and "operator" in out and ADMIN_TOKEN not in out

    code, out = operator("remove", "prod-eu")
    assert code == 0 and "Removed cluster 'prod-eu'" in out
    with pytest.raises(NotFound, match="Unknown cluster 'prod-eu'"):  # the open connection is dropped too
        await call(pods.pods_list, namespace="default", cluster="prod-eu")
    code, out = operator("remove", "prod-eu")
    assert code == 1 and "No registered cluster named 'prod-eu'" in out


async def test_register_by_kubeconfig_keeps_only_the_chosen_context(call, cluster, operator, runtime):
    code, out = operator("add", "from-kubeconfig", "--kubeconfig", str(cluster.kubeconfig), "--context", "admin")
    assert code == 0, out
    info = await call(clusters.cluster_info, cluster="from-kubeconfig")
    assert info.server.startswith("https://127.0.0.1") and info.nodes_total >= 3
    record = runtime.store.get_cluster("from-kubeconfig")
    assert record.trusted and record.context == "admin"
    assert ADMIN_TOKEN in record.kubeconfig and VIEWER_TOKEN not in record.kubeconfig  # no other user's credentials


def test_cluster_names_are_checked_as_cluster_names(operator, credentials):
    token, _ = credentials
    for bad in ("", "Prod_EU", "x" * 64):
        code, out = operator("add", bad, "--server", "https://127.0.0.1:1", "--token-file", str(token))
        assert code == 2, out
        assert f"Cluster name {bad!r} is invalid: use a DNS label" in out and "amespace" not in out


def test_usage_errors_exit_2(operator, credentials):
    token, _ = credentials
    assert operator("add", "a", "--server", "https://127.0.0.1:1")[0] == 2  # no token file
    assert operator("add", "a", "--server", "ftp://x", "--token-file", str(token))[0] == 2
    assert operator("add", "a", "--kubeconfig", "/nonexistent/kubeconfig")[0] == 2
    assert operator("frobnicate")[0] == 2


def test_an_unreachable_cluster_is_not_saved(operator, credentials, runtime):
    token, _ = credentials
    code, out = operator("add", "nowhere", "--server", "https://127.0.0.1:1", "--token-file", str(token))
    assert code == 1 and "'nowhere' was not saved" in out and "did not answer" in out
    assert runtime.store.get_cluster("nowhere") is None


@pytest.fixture
def web_page() -> Iterator[Callable[[int], str]]:
    """A local HTTP server that is not Kubernetes: answers every GET with `status` and an HTML page."""
    status = {"code": 200}

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>SECRET-PAGE-MARKER internal dashboard</body></html>"
            self.send_response(status["code"])
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def url(code: int) -> str:
        status["code"] = code
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield url
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [200, 404])
def test_a_server_that_is_not_kubernetes_is_refused_without_echoing_it(
    operator, credentials, web_page, status, runtime
):
    token, _ = credentials
    code, out = operator("add", "web", "--server", web_page(status), "--token-file", str(token))
    assert code == 1, out
    assert "SECRET-PAGE-MARKER" not in out and "<html" not in out and ADMIN_TOKEN not in out
    assert f"HTTP {status}" in out and "gitVersion" in out and "was not saved" in out
    assert runtime.store.get_cluster("web") is None


async def test_wrong_token_is_refused_and_with_no_verify_reported_as_rejected(
    call, cluster, operator, credentials, tmp_path
):
    cp = cluster.require_control_plane()
    wrong = tmp_path / "wrong-token"
    wrong.write_text("wrong")
    args = ("--server", cp.url, "--token-file", str(wrong), "--ca-file", str(credentials[1]))
    code, out = operator("add", "badtoken", *args)
    assert code == 1 and "rejected the credentials (HTTP 401)" in out
    assert operator("add", "badtoken", *args, "--no-verify")[0] == 0
    with pytest.raises(Forbidden, match="rejected the credentials"):
        await call(clusters.cluster_info, cluster="badtoken")


async def test_unreachable_cluster_names_the_endpoint(call, operator, credentials):
    token, _ = credentials
    code, _ = operator("add", "down", "--server", "https://127.0.0.1:1", "--token-file", str(token), "--no-verify")
    assert code == 0
    with pytest.raises(Unreachable, match=r"'down' at https://127.0.0.1:1 did not answer"):
        await call(overview.nodes_detail, cluster="down")


async def test_forbidden_names_verb_resource_and_identity(call, cluster, namespace):
    cp = cluster.require_control_plane()
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + namespace
    cp.api(
        "POST",
        rbac + "/roles",
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    cp.api(
        "POST",
        rbac + "/rolebindings",
        {
            "metadata": {"name": "viewer-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "viewer", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )

    def authorized() -> bool:  # RBAC reaches the authorizer's cache shortly after the binding is created
        try:
            cp.api("GET", f"/api/v1/namespaces/{namespace}/pods", token=VIEWER_TOKEN)
            return True
        except RuntimeError:
            return False

    states.wait_for(authorized, what="the viewer's RoleBinding to take effect")
    allowed = await call(pods.pods_list, namespace=namespace, cluster="viewer")
    assert allowed.page.total == 0
    with pytest.raises(Forbidden) as err:
        await call(pods.pods_list, namespace="kube-system", cluster="viewer")
    message = str(err.value)
    assert "identity 'kubeconfig user viewer' may not list pods in namespace \"kube-system\"" in message
    assert 'User "viewer" cannot list resource "pods"' in message and "RBAC" in message
    assert VIEWER_TOKEN not in message
