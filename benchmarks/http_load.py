"""Load over authenticated streamable HTTP (issue 16): N concurrent MCP clients against one and two stateless
replicas behind a round-robin load balancer, then one replica restarted gracefully in the middle of the load.

    .venv/bin/python benchmarks/http_load.py [--clients 16] [--seconds 20] [--quick] [--kubeconfig FILE]

All on 127.0.0.1:
- a control plane (tests/cluster/controlplane.py; or --kubeconfig) with 4 namespaces of 10 pods, 2 unhealthy each;
- replicas: `server.py --config FILE --transport http` processes, stateless (`server.stateless_http`), JSON logs
  at INFO as the Helm chart runs them, one SQLite store shared for the bearer token (read scope);
- benchmarks/balancer.py in its own process: round robin over the ready replicas, /readyz checked every 0.5 s,
  retries only requests that could not connect;
- N clients spread over `--processes` client processes (one Python process drives about one core of them): the
  `mcp` SDK's streamable HTTP client with the token, each initializing and listing the tools through the
  balancer, then calling, back to back until the time is up, pods_list (reads the API server), cluster_overview
  (cached per replica for k8s.cache_ttl_seconds, as by default) and diagnose with force_refresh (reads the
  namespace again, then the rules) on the namespaces in turn.

Runs: 1 replica; 2 replicas; then twice 2 replicas with replica 0 restarted a third of --seconds into a window
30 s longer (room for the drain and a cold start): once as Kubernetes does with the chart's pods (`out`: at a
moment when it has requests in flight, it leaves the Service's endpoints, then gets SIGTERM), once by SIGTERM
alone (`sigterm`: the balancer finds out by itself, from /readyz answering 503 while it drains or a refused
connection). Either way the calls in flight finish, the process exits, and a new process on the same port joins
once /readyz answers (`--restart out|sigterm` runs one of the two). Then, without the balancer, `pods_list`
alone on one replica next to the baseline, kubernetes-mcp-server (npm `kubernetes-mcp-server-linux-amd64`,
`--stateless`, no auth: its OAuth needs an identity provider) answering `pods_list_in_namespace` to the same
clients.

Figures: calls/s, p50/p99 latency of the tool calls, failed requests (an exception or an error answer, the
clients' initialize and tools/list included), RSS (now and peak) of each replica, CPU milliseconds per call of
the replicas, the balancer, the clients and the control plane, the cores all of them used (the restarted
run leaves out the stopped process's last seconds), and the cores the whole machine kept busy (others' processes
included: a run starved of CPU shows there). After each restart run: latency before, during and after, what the
balancer saw, and the first errors it passed on. `--logs DIR` keeps every process's log. Nothing here asserts a
timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import anyio  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402
from anyio.streams.buffered import BufferedByteReceiveStream  # noqa: E402
from kubernetes import config as kconfig  # noqa: E402
from kubernetes.client import CoreV1Api  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared._httpx_utils import create_mcp_http_client  # noqa: E402

from benchmarks.cluster_reads import find_kmcp  # noqa: E402
from guard import auth  # noqa: E402
from store import Store  # noqa: E402
from tests.serving import free_port  # noqa: E402

NAMESPACES = [f"load-{i}" for i in range(4)]
PODS_PER_NAMESPACE = 10
TICK = os.sysconf("SC_CLK_TCK")
Call = tuple[str, dict[str, Any]]


# -- the cluster ------------------------------------------------------------------------------------------------
def seed(kubeconfig: Path) -> None:
    """4 namespaces of 10 pods: 8 running, 1 in CrashLoopBackOff, 1 in ImagePullBackOff (bound to node-1)."""
    from tests.cluster import states

    api = kconfig.new_client_from_config(str(kubeconfig))
    core = CoreV1Api(api)
    try:
        for ns in NAMESPACES:
            with contextlib.suppress(ApiException):  # a second run on the same cluster (--kubeconfig)
                core.create_namespace({"metadata": {"name": ns}})
        for ns in NAMESPACES:  # pods are admitted once the namespace's default ServiceAccount exists
            states.wait_for(lambda ns=ns: core.list_namespaced_service_account(ns).items, 60, f"{ns}'s ServiceAccount")
            for i in range(PODS_PER_NAMESPACE):
                name = f"web-{i}"
                try:
                    states.make_pod(core, ns, name, labels={"app": "web"})
                except ApiException as e:
                    if e.status != 409:  # 409: there from an earlier run
                        raise
                status = states.running()
                if i == 0:
                    status = states.crashloop()
                elif i == 1:
                    status = states.waiting("ImagePullBackOff", 'Back-off pulling image "web:typo"')
                states.set_pod_status(core, ns, name, containers=[status], phase="Running" if i > 1 else "Pending")
    finally:
        api.close()


def mix() -> list[Call]:
    calls: list[Call] = []
    for ns in NAMESPACES:
        calls += [
            ("pods_list", {"namespace": ns}),
            ("cluster_overview", {}),
            ("diagnose", {"namespace": ns, "force_refresh": True}),
        ]
    return calls


# -- processes --------------------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (not idle nor waiting for I/O), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) in MB, from /proc/<pid>/status."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in found:
                found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


@dataclass
class Process:
    """A server or balancer process on a fixed loopback port; started again on the same port after a stop."""

    name: str
    argv: list[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Process:
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        return self

    async def wait_for(self, path: str, timeout: float = 120) -> None:
        """Until GET `path` answers 200 (the process must stay alive meanwhile); "" for: until it accepts a
        connection."""
        assert self.proc is not None
        async with httpx.AsyncClient(timeout=5) as http:
            with anyio.fail_after(timeout):
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await http.get(self.url + (path or "/"))
                        if answer.status_code == 200 or not path:
                            return
                    await anyio.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def replica(i: int, config: Path, workdir: Path) -> Process:
    port = free_port()
    argv = [sys.executable, str(REPO / "server.py"), "--config", str(config), "--transport", "http"]
    argv += ["--port", str(port)]
    return Process(f"replica {i}", argv, port, workdir / f"replica-{i}.log")


def balancer(backends: list[Process], workdir: Path) -> Process:
    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.balancer", "--port", str(port), *(b.url for b in backends)]
    return Process("balancer", argv, port, workdir / "balancer.log")


# -- the clients ------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """What the clients saw in one run: (start offset, seconds) of each tool call, and every failure."""

    latencies: list[tuple[float, float]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    t0: float = 0.0  # when the measured window opened (time.monotonic)
    seconds: float = 0.0

    def fail(self, what: str) -> None:
        self.failures.append((time.monotonic() - self.t0 if self.t0 else -1.0, what[:160]))


async def client(
    url: str, token: str | None, calls: list[Call], first: int, tally: Tally, arrive: Callable[[], Awaitable[None]]
) -> None:
    """One MCP client: initialize and tools/list (failures count), one warm-up call, wait for the others, then
    tool calls in turn until the window closes."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    arrived = False
    try:
        async with (
            create_mcp_http_client(headers=headers, timeout=httpx.Timeout(60.0)) as http,
            streamable_http_client(url, http_client=http) as (read, write, _),
            ClientSession(read, write, read_timeout_seconds=timedelta(seconds=60)) as session,
        ):
            await session.initialize()
            await session.list_tools()  # the SDK checks each answer against its tool's output schema
            warm = await session.call_tool(*calls[first % len(calls)])
            if warm.isError:
                tally.fail(f"warm-up {calls[first % len(calls)][0]}: {_text(warm)}")
            arrived = True
            await arrive()
            n = first
            while time.monotonic() < tally.t0 + tally.seconds:
                tool, args = calls[n % len(calls)]
                n += 1
                started = time.monotonic()
                try:
                    result = await session.call_tool(tool, args)
                except Exception as e:  # every failure is counted, whatever its kind
                    tally.fail(f"{tool}: {type(e).__name__}: {e}")
                    continue
                tally.latencies.append((started - tally.t0, time.monotonic() - started))
                if result.isError:
                    tally.fail(f"{tool}: error answer: {_text(result)}")
    except Exception as e:
        tally.fail(f"session: {type(e).__name__}: {e}")
    finally:
        if not arrived:
            await arrive()


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)[:120]


async def load(
    url: str,
    token: str | None,
    calls: list[Call],
    clients: int,
    seconds: float,
    first: int = 0,
    go: Callable[[], Awaitable[None]] | None = None,
) -> Tally:
    """`clients` clients in this process against `url` for `seconds`, counted from when all have initialized
    and `go` (if any) has returned. Client i starts with call `first + i` of `calls`."""
    tally = Tally(seconds=seconds)
    everyone = anyio.Event()
    count = 0

    async def arrive() -> None:
        nonlocal count
        count += 1
        if count == clients:
            if go is not None:
                await go()
            tally.t0 = time.monotonic()
            everyone.set()
        await everyone.wait()

    with anyio.fail_after(seconds + 300):  # a hang guard: every client ends by itself
        async with anyio.create_task_group() as tg:
            for i in range(clients):
                tg.start_soon(client, url, token, calls, first + i, tally, arrive)
    return tally


async def spread(
    url: str,
    token: str | None,
    calls: list[Call],
    clients: int,
    seconds: float,
    processes: int,
    at_start: Callable[[], None] = lambda: None,
    during: Callable[[Tally], Coroutine[Any, Any, None]] | None = None,
) -> tuple[Tally, float]:
    """`load` spread over `processes` worker processes (one Python process drives about one core of clients),
    all starting together; `at_start` is called and `during` started when the window opens. Returns the merged
    tally and the CPU seconds the workers spent in the window."""
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    workers: list[tuple[Any, BufferedByteReceiveStream]] = []
    tally = Tally(seconds=seconds)
    cpu = 0.0
    async with contextlib.AsyncExitStack() as stack:
        first = 0
        for share in (s for s in shares if s):
            proc = await stack.enter_async_context(
                await anyio.open_process([sys.executable, str(Path(__file__)), "--worker"], stderr=None)
            )
            job = {"url": url, "token": token, "calls": calls, "clients": share, "first": first, "seconds": seconds}
            assert proc.stdin is not None and proc.stdout is not None
            await proc.stdin.send((json.dumps(job) + "\n").encode())  # the token never goes on a command line
            workers.append((proc, BufferedByteReceiveStream(proc.stdout)))
            first += share
        with anyio.fail_after(300):
            for _, out in workers:
                await out.receive_until(b"\n", 100)  # "ready": all its clients have initialized
        tally.t0 = time.monotonic()
        at_start()
        for proc, _ in workers:
            await proc.stdin.send(b"go\n")
        async with anyio.create_task_group() as tg:
            if during is not None:
                tg.start_soon(during, tally)
            for _, out in workers:
                with anyio.fail_after(seconds + 300):
                    found = json.loads(await out.receive_until(b"\n", 1 << 28))
                tally.latencies += [tuple(x) for x in found["latencies"]]
                tally.failures += [tuple(x) for x in found["failures"]]
                cpu += found["cpu"]
    return tally, cpu


async def worker() -> None:
    """A client process of `spread`: the job on the first line of stdin; "ready" once its clients have
    initialized; the window opens at "go"; then one line of JSON with what it saw."""
    job = json.loads(await anyio.to_thread.run_sync(sys.stdin.readline))
    started = 0.0

    async def go() -> None:
        nonlocal started
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        started = time.process_time()

    calls = [(tool, args) for tool, args in job["calls"]]
    tally = await load(job["url"], job["token"], calls, job["clients"], job["seconds"], job["first"], go)
    found = {"latencies": tally.latencies, "failures": tally.failures, "cpu": time.process_time() - started}
    print(json.dumps(found), flush=True)


# -- figures ----------------------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]  # nearest rank


@dataclass
class Row:
    name: str
    tally: Tally
    rss: list[tuple[float, float]]
    cores: dict[str, float]
    busy: float  # cores the whole machine kept busy meanwhile

    def line(self) -> str:
        times = [s for _, s in self.tally.latencies]
        rate = len(times) / self.tally.seconds
        rss = " ".join(f"{now:.0f}/{peak:.0f}" for now, peak in self.rss) or "-"
        per_call = [self.cores.get(k, 0.0) * self.tally.seconds / max(1, len(times)) * 1000 for k in GROUPS]
        cpu = " / ".join(f"{ms:.1f}" if k in self.cores else "-" for k, ms in zip(GROUPS, per_call, strict=True))
        p50 = statistics.median(times) * 1000 if times else float("nan")
        return (
            f"{self.name:<42} {len(times):>6} {rate:>7.1f} {p50:>6.0f} {percentile(times, 99) * 1000:>6.0f} "
            f"{len(self.tally.failures):>6}  {rss:<15} {cpu:<24} {sum(self.cores.values()):>5.2f} {self.busy:>5.2f}"
        )


GROUPS = ("replicas", "lb", "clients", "cp")
HEADER = (
    f"{'run':<42} {'calls':>6} {'calls/s':>7} {'p50ms':>6} {'p99ms':>6} {'failed':>6}  {'RSS MB now/peak':<15} "
    f"{'CPU ms/call: srv/lb/cl/cp':<24} {'cores':>5} {'busy':>5}"
)


class Meter:
    """CPU of the processes of a run over its window: `start()` when the window opens, `cores()` at its end."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.started = 0.0
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.started = time.monotonic()
        self.before = {k: sum(cpu_seconds(p) for p in pids) for k, pids in self.groups.items()}
        self.machine_before = machine_busy_seconds()

    def machine(self) -> float:
        """Cores the whole machine kept busy over the window, other people's processes included: next to ours,
        it tells a run starved of CPU by others from one whose processes wait."""
        return (machine_busy_seconds() - self.machine_before) / (time.monotonic() - self.started)

    def cores(self, clients_cpu: float, pids: dict[str, list[int]] | None = None) -> dict[str, float]:
        """Cores used per group; `pids`: the groups' processes now (a restarted replica has a new pid: its
        predecessor's CPU after the window opened is then left out, a small undercount)."""
        wall = time.monotonic() - self.started
        groups = pids or self.groups
        used = {k: (sum(cpu_seconds(p) for p in groups[k]) - self.before[k]) / wall for k in groups}
        used["clients"] = clients_cpu / wall
        return used


def summary(tally: Tally) -> str:
    kinds = Counter(what for _, what in tally.failures)
    return "; ".join(f"{n}× {what}" for what, n in kinds.most_common(5))


# -- runs ---------------------------------------------------------------------------------------------------------
@dataclass
class Setup:
    workdir: Path
    config: Path
    token: str
    cp_pids: list[int]
    kubeconfig: Path
    processes: int  # client processes


RESTARTS = {
    "out": "out of the balancer, then SIGTERM",  # Kubernetes: the endpoint leaves the Service (preStop pause)
    "sigterm": "SIGTERM alone",  # the balancer finds out by itself: /readyz says 503, or the port refuses
}
RESTART_ALLOWANCE = 30.0  # seconds added to a restart run's window: the drain and a cold start on a busy machine


async def balanced_run(
    setup: Setup, replicas: int, clients: int, seconds: float, restart: str | None = None, restart_at: float = 0.0
) -> tuple[Row, dict[str, Any]]:
    """`replicas` replica processes behind the balancer under the mix; with `restart` (a key of RESTARTS), replica
    0 is restarted `restart_at` seconds into the window. Returns the row and the restart's figures (or {})."""
    servers = [replica(i, setup.config, setup.workdir) for i in range(replicas)]
    front: Process | None = None
    restarted: dict[str, Any] = {}
    try:
        for s in servers:
            s.start()
        for s in servers:
            await s.wait_for("/readyz")
        front = balancer(servers, setup.workdir).start()
        await front.wait_for("/-/stats")
        lb = front

        async def restart_one(tally: Tally) -> None:
            await anyio.sleep(restart_at)
            target = servers[0]
            log_size = target.log.stat().st_size
            async with httpx.AsyncClient(timeout=10) as http:
                # the pod is marked for deletion: its endpoint leaves the Service, and it gets SIGTERM
                if restart == "sigterm":  # the balancer finds out by itself (a refused connection, /readyz)
                    taken_out = (await http.get(f"{lb.url}/-/stats")).json()["backends"][0]
                else:
                    taken_out = (await http.post(f"{lb.url}/-/backends/0/out?busy=1")).json()
                restarted["sigterm_at"] = time.monotonic() - tally.t0
                restarted["how"] = RESTARTS[str(restart)]
                restarted["lb_in_flight"] = taken_out["in_flight"]
                assert target.proc is not None
                target.proc.send_signal(signal.SIGTERM)
                code = await anyio.to_thread.run_sync(target.proc.wait, 120)
                restarted["exit_code"] = code
                restarted["exited_at"] = time.monotonic() - tally.t0
                tail = target.log.read_bytes()[log_size:].decode(errors="replace")
                found = re.search(r"finishing (\d+) tool call\(s\) in flight", tail)
                restarted["in_flight"] = int(found.group(1)) if found else 0
                restarted["cut_short"] = "cut short" in tail
                target.start()  # the replacement, on the same port
                await target.wait_for("/readyz")
                if restart == "out":
                    await http.post(f"{lb.url}/-/backends/0/in")
                while not (await http.get(f"{lb.url}/-/stats")).json()["backends"][0]["ready"]:
                    await anyio.sleep(0.05)
                restarted["back_at"] = time.monotonic() - tally.t0
                restarted["pid"] = target.pid

        meter = Meter({"replicas": [s.pid for s in servers], "lb": [front.pid], "cp": setup.cp_pids})
        during = restart_one if restart else None
        tally, cpu = await spread(
            f"{front.url}/mcp", setup.token, mix(), clients, seconds, setup.processes, meter.start, during
        )
        busy = meter.machine()
        cores = meter.cores(cpu, {"replicas": [s.pid for s in servers], "lb": [front.pid], "cp": setup.cp_pids})
        async with httpx.AsyncClient(timeout=10) as http:
            restarted["balancer"] = (await http.get(f"{front.url}/-/stats")).json()
        rss = [memory_mb(s.pid) for s in servers]
        name = f"mix, {replicas} replica{'s' if replicas > 1 else ''}" + (f", restart: {restart}" if restart else "")
        return Row(name, tally, rss, cores, busy), restarted
    finally:
        if front is not None:
            front.stop()
        for s in servers:
            s.stop()


async def direct_run(
    name: str,
    server: Process,
    ready: str,
    token: str | None,
    calls: list[Call],
    clients: int,
    seconds: float,
    setup: Setup,
) -> Row:
    """The clients straight at one server process (no balancer), once GET `ready` answers."""
    try:
        server.start()
        await server.wait_for(ready)
        meter = Meter({"replicas": [server.pid], "cp": setup.cp_pids})
        tally, cpu = await spread(f"{server.url}/mcp", token, calls, clients, seconds, setup.processes, meter.start)
        busy = meter.machine()
        cores = meter.cores(cpu)
        return Row(name, tally, [memory_mb(server.pid)], cores, busy)
    finally:
        server.stop()


def kmcp_version(binary: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return "?"


def prepare(workdir: Path, kubeconfig: Path, cp_pids: list[int], processes: int, json_response: bool = False) -> Setup:
    """The shared store with a read token, and the replicas' settings file."""
    store_path = workdir / "cloudpilot.db"
    store = Store(store_path)
    try:
        token = auth.Tokens(store).create("load", "read")[0]
    finally:
        store.close()
    config = workdir / "cloudpilot.yaml"
    settings = {
        "log_level": "INFO",
        "k8s": {"kubeconfig": str(kubeconfig), "context": None},
        "store": {"path": str(store_path)},
        "server": {
            "transport": "http",
            "host": "127.0.0.1",
            "stateless_http": True,
            "json_response": json_response,
            "log_format": "json",
        },
    }
    config.write_text(yaml.safe_dump(settings))
    return Setup(workdir, config, token, cp_pids, kubeconfig, processes)


@contextlib.contextmanager
def cluster(kubeconfig: Path | None, workdir: Path) -> Iterator[tuple[Path, list[int]]]:
    """(kubeconfig, control plane pids): the given cluster, else a control plane started and seeded here."""
    if kubeconfig is not None:
        seed(kubeconfig)
        yield kubeconfig, []
        return
    from tests.cluster.controlplane import ControlPlane

    cp = ControlPlane(workdir / "controlplane").start(nodes=3)
    try:
        seed(cp.kubeconfig)
        yield cp.kubeconfig, [p.pid for p in cp.procs]
    finally:
        cp.stop()


async def run(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="cloudpilot-load-") as tmp,
        cluster(args.kubeconfig, Path(tmp)) as plane,
        keep_logs(Path(tmp), args.logs),
    ):
        kubeconfig, cp_pids = plane
        processes = max(1, min(args.processes, args.clients))
        setup = prepare(Path(tmp), kubeconfig, cp_pids, processes, args.json_response)
        clients, seconds = args.clients, args.seconds
        print(
            f"{clients} MCP clients (mcp SDK, streamable HTTP, bearer token) × {seconds:g} s per run, loopback; "
            f"tool mix: pods_list, cluster_overview, diagnose over {len(NAMESPACES)} namespaces of "
            f"{PODS_PER_NAMESPACE} pods; replies as {'JSON' if args.json_response else 'event streams'}; clients in "
            f"{processes} process(es); {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start\n",
            flush=True,
        )
        print(HEADER, flush=True)
        rows: list[Row] = []
        restarts: list[tuple[Row, dict[str, Any]]] = []
        for replicas in (1, 2):
            row, _ = await balanced_run(setup, replicas, clients, seconds)
            rows.append(row)
            print(row.line(), flush=True)
        for how in RESTARTS if args.restart == "both" else [args.restart]:
            window = seconds + RESTART_ALLOWANCE
            row, found = await balanced_run(setup, 2, clients, window, restart=how, restart_at=seconds / 3)
            rows.append(row)
            restarts.append((row, found))
            print(row.line(), flush=True)
        pods = [("pods_list", {"namespace": ns}) for ns in NAMESPACES]
        one = replica(9, setup.config, setup.workdir)
        name = "pods_list, 1 replica, no balancer"
        rows.append(await direct_run(name, one, "/readyz", setup.token, pods, clients, seconds, setup))
        print(rows[-1].line(), flush=True)
        binary = find_kmcp()
        if binary:
            port = free_port()
            argv = [binary, "--port", str(port), "--bind-address", "127.0.0.1", "--kubeconfig", str(kubeconfig)]
            argv += ["--stateless", "--read-only", "--disable-multi-cluster", "--toolsets", "core"]
            kmcp = Process("kubernetes-mcp-server", argv, port, setup.workdir / "kmcp.log")
            theirs = [("pods_list_in_namespace", {"namespace": ns}) for ns in NAMESPACES]
            name = f"baseline: kubernetes-mcp-server {kmcp_version(binary)}"
            rows.append(await direct_run(name, kmcp, "", None, theirs, clients, seconds, setup))
            print(rows[-1].line(), flush=True)
        else:
            print("kubernetes-mcp-server (baseline): not installed (npm i kubernetes-mcp-server-linux-amd64)")
        print(
            "\nCPU ms/call: the replicas together / the balancer / the client processes / the control plane "
            "(kube-apiserver, etcd, controllers); cores: all of them together; busy: the whole machine's busy cores, "
            "other processes included. The baseline answers "
            "pods_list_in_namespace (--stateless, --read-only), with no balancer and no token."
        )
        for row, found in restarts:
            report_restart(row, found)
        for row in rows:
            if row.tally.failures:
                print(f"failures in '{row.name}': {summary(row.tally)}")


@contextlib.contextmanager
def keep_logs(workdir: Path, into: Path | None) -> Iterator[None]:
    """Copy the replicas', the balancer's and the baseline's logs into `into` (if given) at the end."""
    try:
        yield
    finally:
        if into is not None:
            into.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                (into / log.name).write_bytes(log.read_bytes())


def report_restart(row: Row, restart: dict[str, Any]) -> None:
    if "sigterm_at" not in restart:
        print("\nrestart: did not happen (the window closed first); use more --seconds")
        return
    term, back = restart["sigterm_at"], restart.get("back_at", row.tally.seconds)
    print(
        f"\n{row.name}: {restart['how']} at {term:.1f} s with {restart['lb_in_flight']} "
        f"request(s) in flight on it ({restart['in_flight']} still running when the drain began)"
        f"{' (some cut short!)' if restart['cut_short'] else ''}; exit code "
        f"{restart['exit_code']} at {restart['exited_at']:.1f} s; the new process back in rotation at {back:.1f} s"
    )
    for label, lo, hi in (("before", 0, term), ("while out", term, back), ("after", back, row.tally.seconds)):
        times = [s for at, s in row.tally.latencies if lo <= at < hi]
        failed = sum(1 for at, _ in row.tally.failures if lo <= at < hi)
        if times:
            print(
                f"  {label:<10} {len(times):>5} calls  p50 {statistics.median(times) * 1000:6.0f} ms  "
                f"p99 {percentile(times, 99) * 1000:6.0f} ms  max {max(times) * 1000:6.0f} ms  failed {failed}"
            )
    stats = restart.get("balancer", {})
    print(
        f"  balancer: {stats.get('requests')} requests, {stats.get('retried')} retried after a refused connection, "
        f"{stats.get('backend_errors')} backend errors, {stats.get('cut')} answers cut, {stats.get('unavailable')} "
        f"with no backend; per backend {[b['forwarded'] for b in stats.get('backends', [])]}"
    )
    for error in stats.get("errors", []):
        print(f"  balancer saw: {error}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16, help="concurrent MCP clients (default 16)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run (default 20)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 4 clients, 4 s per run")
    p.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting a control plane")
    p.add_argument("--processes", type=int, default=2, help="client processes the clients are spread over")
    p.add_argument("--json-response", action="store_true", help="replicas answer JSON bodies (server.json_response)")
    p.add_argument(
        "--restart",
        choices=[*RESTARTS, "both"],
        default="both",
        help="how replica 0 is restarted: 'out' takes it out of the balancer, then SIGTERM (Kubernetes with the "
        "chart's preStop pause); 'sigterm' sends SIGTERM alone, the balancer finding out by /readyz or a refused "
        "connection; 'both' (default) runs each",
    )
    p.add_argument("--logs", type=Path, help="keep the processes' logs in this directory")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # a client process of `spread`
    args = p.parse_args()
    if args.worker:
        anyio.run(worker)
        return
    if args.quick:
        args.clients, args.seconds = 4, 4.0
    anyio.run(run, args)


if __name__ == "__main__":
    main()
