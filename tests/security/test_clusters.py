"""Cluster access hardening: stored kubeconfigs cannot run code or read files unless an operator added them, no
key material stays in temporary files, a broken kubeconfig breaks only what needs it, errors say what to do,
and the client's connection pool is sized for concurrent calls."""

from __future__ import annotations

import base64
import http.server
import logging
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kubernetes import client as kclient

from cli import clusters as cli
from connections.kube import Connection, require_namespace
from connections.kubeconfig import inline_only
from errors import InvalidInput, NotAllowed, Unreachable
from runtime import Runtime, use
from settings import Settings
from store import ClusterRecord, Store
from tests.cluster.controlplane import ADMIN_TOKEN
from tools import clusters

EXEC_CREDENTIAL = orjson.dumps(
    {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", "status": {"token": ADMIN_TOKEN}}
).decode()


def kubeconfig(server: str, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "c",
            "clusters": [{"name": "k", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        }
    )


def ca_data(cp: Any) -> dict[str, str]:
    return {"certificate-authority-data": base64.b64encode((cp.dir / "pki" / "ca.crt").read_bytes()).decode()}


def exec_user(marker: Path) -> dict[str, Any]:
    script = f"touch {marker}; echo '{EXEC_CREDENTIAL}'"
    return {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "/bin/sh", "args": ["-c", script]}
    }


# -- kubeconfigs that would run code or read files ---------------------------------------------------------
@pytest.mark.stores  # the cluster registry: SQLite, then PostgreSQL
async def test_an_exec_plugin_in_an_untrusted_record_is_refused_and_never_run(call, runtime, cluster, tmp_path):
    cp = cluster.require_control_plane()
    marker = tmp_path / "exec-ran"
    text = kubeconfig(cp.url, exec_user(marker), ca_data(cp))
    runtime.store.add_cluster(ClusterRecord(name="plugin", server=cp.url, kubeconfig=text))
    with pytest.raises(NotAllowed) as err:
        await call(clusters.cluster_info, cluster="plugin")
    message = str(err.value)
    assert "`exec`" in message and "runs a program" in message
    assert "cloudpilot clusters add plugin --kubeconfig PATH --context c" in message
    assert not marker.exists()

    # the same kubeconfig added by an operator is theirs to run: the refusal above was the rule, not a failure
    runtime.store.add_cluster(ClusterRecord(name="operator-plugin", server=cp.url, kubeconfig=text, trusted=True))
    info = await call(clusters.cluster_info, cluster="operator-plugin")
    assert marker.exists() and info.nodes_total >= 1


@pytest.fixture
def listener() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A plain HTTP server that records every request's headers (and answers 404)."""
    seen: list[dict[str, str]] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


async def test_a_token_file_in_an_untrusted_record_is_refused_and_never_read(call, runtime, listener):
    url, seen = listener
    secret = Path("/etc/hostname").read_text().strip()
    text = kubeconfig(url, {"tokenFile": "/etc/hostname"})
    runtime.store.add_cluster(ClusterRecord(name="reader", server=url, kubeconfig=text))
    with pytest.raises(NotAllowed, match=r"`tokenFile`.*reads a local file") as err:
        await call(clusters.cluster_info, cluster="reader")
    assert seen == []  # nothing was sent anywhere
    assert not secret or secret not in str(err.value)


@pytest.mark.parametrize(
    ("user", "cluster", "field"),
    [
        ({"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/true"}}}, {}, "auth-provider"),
        ({"client-certificate": "/etc/ssl/cert.pem", "client-key-data": "eA=="}, {}, "client-certificate"),
        ({"client-certificate-data": "eA==", "client-key": "/etc/ssl/key.pem"}, {}, "client-key"),
        ({"token": "t"}, {"certificate-authority": "/etc/ssl/ca.pem"}, "certificate-authority"),
        ({"token": "t"}, {"proxy-url": "http://10.0.0.1:3128"}, "proxy-url"),
    ],
)
def test_inline_only_names_each_refused_field(user, cluster, field):
    doc = yaml.safe_load(kubeconfig("https://10.0.0.1:6443", user, cluster))
    with pytest.raises(NotAllowed, match=f"`{field}`") as err:
        inline_only(doc, None, cluster="prod")
    assert "cloudpilot clusters add prod --kubeconfig PATH --context c" in str(err.value)
    inline_only(
        yaml.safe_load(kubeconfig("https://10.0.0.1:6443", {"token": "t"}, {"insecure-skip-tls-verify": True})), None
    )


def test_an_old_store_gains_the_trusted_column_and_its_records_stay_untrusted(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE clusters (name TEXT PRIMARY KEY, server TEXT NOT NULL, token TEXT, kubeconfig TEXT, "
        "context TEXT, ca_cert TEXT, insecure_skip_tls_verify INTEGER NOT NULL DEFAULT 0, "
        "description TEXT NOT NULL DEFAULT '', added_at TEXT NOT NULL);"
        "INSERT INTO clusters (name, server, token, added_at) VALUES ('legacy', 'https://x', 't', '2024-01-01');"
    )
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.get_cluster("legacy").trusted is False
        store.add_cluster(ClusterRecord(name="new", server="https://y", token="t", trusted=True))
        assert store.get_cluster("new").trusted is True
    finally:
        store.close()
    assert Store(path).get_cluster("legacy") is not None  # a second open finds the column in place


# -- no key material left in temporary files ------------------------------------------------------------
@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp directory every `tempfile` call uses during the test (others' files cannot interfere)."""
    path = tmp_path / "tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def client_certificate(cp: Any, where: Path) -> tuple[Path, Path]:
    """A client certificate for a system:masters user, signed by the test control plane's CA."""
    pki = cp.dir / "pki"
    key, csr, crt = where / "client.key", where / "client.csr", where / "client.crt"
    for args in (
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            "/CN=cert-admin/O=system:masters",
        ],
        ["x509", "-req", "-in", csr, "-CA", pki / "ca.crt", "-CAkey", pki / "ca.key", "-CAcreateserial", "-out", crt],
    ):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    csr.unlink()
    return crt, key


async def test_certificates_and_keys_never_stay_in_temp_files(cluster, settings, private_tmp, tmp_path):
    cp = cluster.require_control_plane()
    crt, key = client_certificate(cp, tmp_path)
    b64 = {p: base64.b64encode(p.read_bytes()).decode() for p in (crt, key)}
    cert_user = {"client-certificate-data": b64[crt], "client-key-data": b64[key]}
    ca_pem = (cp.dir / "pki" / "ca.crt").read_text()
    rt = Runtime(settings)
    rt.store.add_cluster(ClusterRecord(name="by-token", server=cp.url, token=ADMIN_TOKEN, ca_cert=ca_pem))
    rt.store.add_cluster(
        ClusterRecord(name="by-cert", server=cp.url, kubeconfig=kubeconfig(cp.url, cert_user, ca_data(cp)))
    )
    try:
        with use(rt):
            for name in ("by-token", "by-cert", "admin", None):  # registry, registry, kubeconfig context, default
                info = await clusters.cluster_info(cluster=name)
                assert info.nodes_total >= 1, name
                assert list(private_tmp.iterdir()) == [], name  # while the connections are open, too
        assert rt.clusters.get("by-cert").identity == "kubeconfig of registered cluster by-cert"
        probe = rt.clusters.connect_record(rt.store.get_cluster("by-cert"))
        probe.close()
    finally:
        rt.close()
    assert list(private_tmp.iterdir()) == []


def test_an_operator_kubeconfig_with_relative_certificate_files_is_stored_inline(cluster, settings, tmp_path):
    cp = cluster.require_control_plane()
    home = tmp_path / "kube"
    home.mkdir()
    crt, key = client_certificate(cp, home)
    (home / "ca.crt").write_bytes((cp.dir / "pki" / "ca.crt").read_bytes())
    user = {"client-certificate": crt.name, "client-key": key.name}
    (home / "config").write_text(kubeconfig(cp.url, user, {"certificate-authority": "ca.crt"}))
    config = tmp_path / "cloudpilot.yaml"
    config.write_text(yaml.safe_dump({"store": {"path": str(settings.store.path)}}))
    assert cli.main(["add", "certs", "--kubeconfig", str(home / "config"), "--config", str(config)]) == 0
    for f in home.iterdir():  # everything needed was copied into the record
        f.unlink()
    rt = Runtime(settings)
    try:
        conn = rt.clusters.get("certs")
        assert conn.get("/version")["gitVersion"].startswith("v1.")
        stored = yaml.safe_load(rt.store.get_cluster("certs").kubeconfig)
        assert "client-certificate-data" in stored["users"][0]["user"]
    finally:
        rt.close()


# -- a broken kubeconfig ------------------------------------------------------------------------------------
async def test_a_broken_kubeconfig_breaks_only_what_needs_it(cluster, tmp_path):
    cp = cluster.require_control_plane()
    broken = tmp_path / "config"
    broken.write_text("apiVersion: v1\nusers:\n  - name: admin\n    token: KUBECONFIG-CONTENT-MARKER\n   bad: [\n")
    settings = Settings(k8s={"kubeconfig": broken}, store={"path": tmp_path / "db"})
    rt = Runtime(settings)
    ca = (cp.dir / "pki" / "ca.crt").read_text()
    rt.store.add_cluster(ClusterRecord(name="prod", server=cp.url, token=ADMIN_TOKEN, ca_cert=ca, trusted=True))
    try:
        with use(rt):
            listed = await clusters.clusters_list()
            assert [c.name for c in listed.clusters] == ["prod"]
            assert listed.kubeconfig_error and str(broken) in listed.kubeconfig_error
            assert "not valid YAML" in listed.kubeconfig_error and "line " in listed.kubeconfig_error
            note = listed.render().splitlines()[-1]
            assert note.startswith("Note: The kubeconfig at") and "MARKER" not in listed.model_dump_json()

            info = await clusters.cluster_info(cluster="prod")  # a registered cluster still works
            assert info.nodes_total >= 1

            for cluster_arg in (None, "admin"):  # what needs the kubeconfig names it and says what to do
                with pytest.raises(InvalidInput) as err:
                    await clusters.cluster_info(cluster=cluster_arg)
                message = str(err.value)
                assert str(broken) in message and "Fix that file" in message and "MARKER" not in message
    finally:
        rt.close()


# -- errors that say what to do -------------------------------------------------------------------------
@pytest.fixture
def offline() -> Iterator[Connection]:
    api = kclient.ApiClient(kclient.Configuration(host="https://127.0.0.1:1"))
    yield Connection(name="prod", api=api, identity="tester")
    api.close()


def test_api_errors_say_what_to_do(offline):
    path = "/api/v1/namespaces/shop/configmaps"
    too_large = offline._error(413, b'{"message":"Request entity too large: limit is 3145728"}', "POST", path)
    assert isinstance(too_large, InvalidInput) and "too large" in str(too_large) and "Send less" in str(too_large)
    assert "temporary" not in str(too_large)

    throttled = offline._error(429, b'{"message":"slow down"}', "GET", path, retry_after=7)
    assert isinstance(throttled, Unreachable) and throttled.delay == 7 and "Retry after 7 seconds" in str(throttled)
    unsure = offline._error(429, b"{}", "GET", path)
    assert "no Retry-After" in str(unsure)

    failed = offline._error(503, b'{"message":"etcd unavailable"}', "GET", path)
    assert isinstance(failed, Unreachable) and "temporary" in str(failed)

    long = offline._error(500, orjson.dumps({"message": "x" * 5000}), "GET", path)
    assert len(str(long)) < 700 and "(cut)" in str(long)
    page = offline._error(502, b"<html><body>PROXY-PAGE-MARKER</body></html>", "GET", path)
    assert "PROXY-PAGE-MARKER" not in str(page) and "HTML page" in str(page)


def test_offending_input_is_quoted_short_and_empty_namespaces_are_named(offline):
    with pytest.raises(InvalidInput, match="namespace is required for Pod"):
        require_namespace("Pod", "")
    offline._discovery = (float("inf"), [])
    with pytest.raises(InvalidInput) as err:
        offline.resolve("y" * 5000)
    assert "y" * 81 not in str(err.value)


def test_a_path_to_one_namespaced_object_needs_its_namespace(runtime, cluster):
    pods = runtime.clusters.get().resolve("pods")
    with pytest.raises(InvalidInput, match="namespace is required for Pod"):
        pods.path("", "web")
    assert pods.path(None) == "/api/v1/pods"  # listing across namespaces is fine


async def test_a_request_too_large_for_the_api_server_says_send_less(runtime, cluster, namespace):
    conn = runtime.clusters.get()
    body = {"metadata": {"name": "big"}, "data": {"blob": "x" * (4 << 20)}}
    with pytest.raises(InvalidInput, match=r"too large.*HTTP 413") as err:
        conn.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=body)
    assert "Send less" in str(err.value) and "temporary" not in str(err.value)


# -- the connection pool ------------------------------------------------------------------------------------
def concurrent_versions(conn: Connection, calls: int) -> list[Any]:
    barrier = threading.Barrier(calls)

    def one(_: int) -> Any:
        barrier.wait()
        return conn.get("/version")

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))


def test_forty_concurrent_calls_keep_their_connections(runtime, caplog):
    conn = runtime.clusters.get()
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        answers = concurrent_versions(conn, 40)
    assert all(a["gitVersion"] for a in answers)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_a_small_pool_makes_calls_wait_instead_of_discarding_connections(settings, caplog):
    small = settings.model_copy(update={"k8s": settings.k8s.model_copy(update={"max_connections": 2})})
    rt = Runtime(small)
    try:
        conn = rt.clusters.get()
        with caplog.at_level(logging.WARNING, logger="urllib3"):
            assert len(concurrent_versions(conn, 12)) == 12
        assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
        pool = conn.api.rest_client.pool_manager.connection_from_url(conn.server)
        assert pool.num_connections <= 2  # connections opened in all
    finally:
        rt.close()
