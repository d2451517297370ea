"""A real Kubernetes control plane for tests and benchmarks: etcd + kube-apiserver + controller-manager +
scheduler on 127.0.0.1, fake Ready nodes, and a fake kubelet that serves container logs.

There is no kubelet, so pods are scheduled (bound to a node) but never run: tests set the state they need
through the pods' `status` subresource. The fake kubelet is an HTTPS server on loopback that the nodes
advertise as their kubelet endpoint, so `pods/log` goes through the API server for real.

    python -m tests.cluster.controlplane --nodes 3     # start one by hand; prints KUBECONFIG; Ctrl-C stops

The processes are tracked and stopped by `stop()`; as a program, SIGINT and SIGTERM stop them all (also while
starting). On Linux each child also gets SIGTERM if the process that started it dies without stopping it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.server
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import orjson
import urllib3

from tests.serving import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "cloudpilot-admin-token"
VIEWER_TOKEN = "cloudpilot-viewer-token"
AUDITOR_TOKEN = "cloudpilot-auditor-token"


def ensure_binaries() -> Path:
    """The directory holding kube-apiserver & co.: $CLOUDPILOT_KUBE_BIN, or built (and cached) now."""
    if os.environ.get("CLOUDPILOT_KUBE_BIN"):
        return Path(os.environ["CLOUDPILOT_KUBE_BIN"])
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-control-plane.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


class FakeKubelet:
    """Answers the API server's `/containerLogs/<ns>/<pod>/<container>` with logs the tests set."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.logs: dict[tuple[str, str, str, bool], str] = {}
        self.stamped: dict[tuple[str, str, str], bool] = {}
        logs, stamped = self.logs, self.stamped

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                text = logs.get((parts[1], parts[2], parts[3], q.get("previous") == "true"))
                if text is None:
                    self.send_error(404, "no such container log")
                    return
                lines = text.splitlines(keepends=True)
                if stamped.get((parts[1], parts[2], parts[3])) and q.get("timestamps") != "true":
                    lines = [line.partition(" ")[2] for line in lines]  # stored stamped, as the runtime keeps them
                if "tailLines" in q:
                    lines = lines[-int(q["tailLines"]) :] if int(q["tailLines"]) else []
                body = "".join(lines).encode()
                if "limitBytes" in q:
                    body = body[: int(q["limitBytes"])]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever() that never started otherwise
            self.server.shutdown()
        self.server.server_close()

    def set_log(
        self, namespace: str, pod: str, container: str, text: str, previous: bool = False, stamped: bool = False
    ) -> None:
        """The container's log. `stamped`: every line starts with its RFC 3339 time and a space, shown only
        when the request asks for `timestamps=true`, as a kubelet does."""
        self.logs[(namespace, pod, container, previous)] = text
        self.stamped[(namespace, pod, container)] = stamped


class ControlPlane:
    """Start with `start()`, stop with `stop()`. `kubeconfig` has contexts `admin` (current, system:masters),
    and `viewer` and `auditor`, users with no permissions until a test binds some."""

    def __init__(
        self, workdir: Path | None = None, binaries: Path | None = None, apiserver_args: tuple[str, ...] = ()
    ) -> None:
        self.apiserver_args = apiserver_args
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="cloudpilot-cp-"))
        self.bin = binaries or ensure_binaries()
        self.etcd = shutil.which("etcd") or "/usr/bin/etcd"
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = self.dir / "kubeconfig"
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self.kubelet: FakeKubelet | None = None
        self._http = urllib3.PoolManager(retries=False)

    # -- life cycle -------------------------------------------------------------------------------
    def start(self, nodes: int = 3) -> ControlPlane:
        """Start everything; on any failure (or interruption) stop what was started, then re-raise."""
        try:
            return self._start(nodes)
        except BaseException:
            self.stop()
            raise

    def _start(self, nodes: int) -> ControlPlane:
        pki = self._make_pki()
        self._http = urllib3.PoolManager(ca_certs=str(pki / "ca.crt"), retries=False, maxsize=32)
        self.kubelet = FakeKubelet(pki / "kubelet.crt", pki / "kubelet.key")
        self.kubelet.start()
        client_port, peer_port = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                self.etcd,
                "--data-dir",
                str(self.dir / "etcd"),
                "--name",
                "default",
                "--listen-client-urls",
                f"http://127.0.0.1:{client_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{client_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--initial-cluster-state",
                "new",
                "--quota-backend-bytes",
                str(4 << 30),
                "--log-level",
                "warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{client_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki}/apiserver.crt",
                f"--tls-private-key-file={pki}/apiserver.key",
                f"--client-ca-file={pki}/ca.crt",
                f"--token-auth-file={pki}/tokens.csv",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki}/sa.pub",
                f"--service-account-signing-key-file={pki}/sa.key",
                "--service-cluster-ip-range=10.0.0.0/16",
                "--allow-privileged=true",
                "--disable-admission-plugins=TaintNodesByCondition",
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-certificate-authority={pki}/ca.crt",
                "--max-requests-inflight=1600",
                "--max-mutating-requests-inflight=800",
                *self.apiserver_args,
            ],
        )
        self._write_kubeconfig()
        self._wait_ready()
        kc = str(self.kubeconfig)
        common = [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--secure-port=0",
        ]
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                *common,
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki}/sa.key",
                f"--root-ca-file={pki}/ca.crt",
                f"--cluster-signing-cert-file={pki}/ca.crt",
                f"--cluster-signing-key-file={pki}/ca.key",
                "--controllers=*,-node-lifecycle-controller",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
            ],
        )
        self._spawn(
            "kube-scheduler", [str(self.bin / "kube-scheduler"), *common, "--kube-api-qps=200", "--kube-api-burst=400"]
        )
        self._wait_default_service_account()
        for i in range(nodes):
            self.add_node(f"node-{i}", role="control-plane" if i == 0 and nodes > 2 else None)
        return self

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self.kubelet:
            self.kubelet.stop()
            self.kubelet = None

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API helpers used by tests and seeding ------------------------------------------------------
    def api(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", token: str = ADMIN_TOKEN
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        r = self._http.request(
            method, self.url + path, body=orjson.dumps(body) if body is not None else None, headers=headers, timeout=30
        )
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {r.data[:500]!r}")
        return orjson.loads(r.data) if r.data else None

    def add_node(
        self,
        name: str,
        cpu: str = "4",
        memory: str = "16Gi",
        pods: str = "110",
        role: str | None = None,
        ready: bool = True,
        labels: dict[str, str] | None = None,
        taints: list[dict[str, str]] | None = None,
    ) -> None:
        assert self.kubelet is not None
        meta_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", **(labels or {})}
        if role:
            meta_labels[f"node-role.kubernetes.io/{role}"] = ""
        spec: dict[str, Any] = {}
        if taints is not None:
            spec["taints"] = taints
        elif role == "control-plane":
            spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
        self.api(
            "POST",
            "/api/v1/nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": meta_labels}, "spec": spec},
        )
        self.set_node_status(name, cpu=cpu, memory=memory, pods=pods, ready=ready)

    def set_node_status(
        self,
        name: str,
        cpu: str = "4",
        memory: str = "16Gi",
        pods: str = "110",
        ready: bool = True,
        conditions: dict[str, str] | None = None,
    ) -> None:
        assert self.kubelet is not None
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        conds = {
            "MemoryPressure": "False",
            "DiskPressure": "False",
            "PIDPressure": "False",
            "Ready": "True" if ready else "False",
            **(conditions or {}),
        }
        status = {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "95Gi"},
            "conditions": [
                {
                    "type": t,
                    "status": s,
                    "reason": f"Kubelet{t}" if s == "True" else f"Kubelet{t}Not",
                    "message": f"{t} is {s}",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
                for t, s in conds.items()
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet.port}},
            "nodeInfo": {
                "kubeletVersion": "v1.35.8",
                "kubeProxyVersion": "v1.35.8",
                "osImage": "Debian 12",
                "kernelVersion": "6.1.0-test",
                "containerRuntimeVersion": "containerd://1.7.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": name,
                "systemUUID": name,
                "bootID": name,
            },
        }
        self.api(
            "PATCH", f"/api/v1/nodes/{name}/status", {"status": status}, content_type="application/merge-patch+json"
        )

    # -- internals ---------------------------------------------------------------------------------
    def restart_apiserver(self, down_seconds: float = 1.0) -> None:
        """Kill kube-apiserver (as a crash or a node loss would), wait, start it again with the same arguments;
        etcd keeps the data. (A graceful stop waits for long-running requests such as watches to end.)"""
        i, proc = next((i, p) for i, p in enumerate(self.procs) if Path(str(p.args[0])).name == "kube-apiserver")
        argv = [str(a) for a in proc.args]  # type: ignore[union-attr]
        proc.kill()
        proc.wait(30)
        time.sleep(down_seconds)
        self.procs.pop(i)
        self._spawn("kube-apiserver", argv)
        self._wait_ready()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (open for the child's lifetime)
        self._logs.append(log)
        self.procs.append(
            subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a terminal's Ctrl-C reaches this process, which stops them in order
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
        )

    def _check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                name = Path(str(p.args[0])).name
                tail = (self.dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {p.returncode}:\n{tail}")

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(urllib3.exceptions.HTTPError, OSError):
                r = self._http.request(
                    "GET", self.url + "/readyz", timeout=2, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                )
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"kube-apiserver not ready after {timeout}s; see {self.dir}/kube-apiserver.log")

    def _wait_default_service_account(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(RuntimeError):
                self.api("GET", "/api/v1/namespaces/default/serviceaccounts/default")
                return
            time.sleep(0.2)
        raise TimeoutError("the controller-manager did not create the default service account")

    def _make_pki(self) -> Path:
        pki = self.dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)

        def ssl_(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

        ssl_(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "3650",
            "-subj",
            "/CN=cloudpilot-test-ca",
        )
        for name, sans in (
            ("apiserver", "IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"),
            ("kubelet", "IP:127.0.0.1,DNS:localhost"),
        ):
            ssl_(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                f"/CN={name}",
            )
            (pki / f"{name}.ext").write_text(f"subjectAltName={sans}\n")
            ssl_(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                f"{name}.crt",
                "-days",
                "3650",
                "-extfile",
                f"{name}.ext",
            )
        ssl_("genrsa", "-out", "sa.key", "2048")
        ssl_("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        (pki / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},admin,admin,"system:masters"\n{VIEWER_TOKEN},viewer,viewer\n'
            f"{AUDITOR_TOKEN},auditor,auditor\n"
        )
        return pki

    def _write_kubeconfig(self) -> None:
        ca = (self.dir / "pki" / "ca.crt").read_text()
        import base64

        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "admin",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                    },
                }
            ],
            "users": [
                {"name": "admin", "user": {"token": ADMIN_TOKEN}},
                {"name": "viewer", "user": {"token": VIEWER_TOKEN}},
                {"name": "auditor", "user": {"token": AUDITOR_TOKEN}},
            ],
            "contexts": [
                {"name": "admin", "context": {"cluster": "test", "user": "admin"}},
                {"name": "viewer", "context": {"cluster": "test", "user": "viewer"}},
                {"name": "auditor", "context": {"cluster": "test", "user": "auditor"}},
            ],
        }
        self.kubeconfig.write_bytes(orjson.dumps(doc))  # JSON is valid YAML
        self.kubeconfig.chmod(0o600)


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None  # looked up before any fork


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux for SIGTERM when the parent thread dies (PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _stop_on_signal(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_on_signal)
    cp = ControlPlane(args.dir)
    try:
        cp.start(nodes=args.nodes)
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        while True:
            signal.pause()
    except _Stop as e:
        print(f"{e}: stopping the control plane", file=sys.stderr, flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        cp.stop()


if __name__ == "__main__":
    main()
