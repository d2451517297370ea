"""Operating the server over real HTTP on 127.0.0.1: probes, Prometheus metrics, JSON logs and the drain on SIGTERM.

Probes and metrics are served by uvicorn in the test's event loop (as in tests/security/test_http_auth.py); the
JSON logs and the graceful shutdown need a process of their own, started from server.py."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from prometheus_client.parser import text_string_to_metric_families

import server
from guard import auth
from ops.metrics import Metrics
from settings import Settings
from store import Store
from tests.serving import free_port, uvicorn_serving

REPO = Path(__file__).resolve().parents[1]
SECRET = "ghp_" + "a1B2c3D4" * 4 + "e5F6"  # a GitHub token's shape: masked wherever it appears


def with_server(settings: Settings, **server_fields: Any) -> Settings:
    return settings.model_copy(update={"server": settings.server.model_copy(update=server_fields)})


def add_token(settings: Settings, name: str, scope: str) -> str:
    store = Store(settings.store.path)
    try:
        return auth.Tokens(store).create(name, scope)[0]
    finally:
        store.close()


def unreachable_kubeconfig(path: Path, port: int) -> Path:
    """A kubeconfig whose API server is 127.0.0.1:`port`, with a token that must never be shown."""
    where = {"server": f"https://127.0.0.1:{port}", "insecure-skip-tls-verify": True}
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": where}],
                "users": [{"name": "u", "user": {"token": SECRET}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "gone",
            }
        )
    )
    return path


@asynccontextmanager
async def serving(settings: Settings, metrics: Metrics) -> AsyncIterator[str]:
    """`server.build_server(settings)` served by uvicorn on 127.0.0.1 in this event loop; yields its base URL."""
    port = free_port()
    mcp: Any = server.build_server(with_server(settings, port=port), metrics=metrics)
    async with uvicorn_serving(mcp.streamable_http_app(), port, 30):
        yield f"http://127.0.0.1:{port}"


@asynccontextmanager
async def session(url: str, token: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


async def get(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(url, headers=headers)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) → value, from Prometheus' text format."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def offline(tmp_path: Path, **server_fields: Any) -> Settings:
    """No cluster: every request these tests make is answered before any API call."""
    return Settings(
        k8s={"kubeconfig": tmp_path / "no-kubeconfig", "context": None},
        store={"path": tmp_path / "cloudpilot.db"},
        server={"transport": "http", **server_fields},
    )


# -- probes ---------------------------------------------------------------------------------------------------


async def test_healthz_needs_no_token_and_no_listed_host(tmp_path):
    settings = offline(tmp_path, host="0.0.0.0", allowed_hosts=["cloudpilot.ops.svc:*"])
    add_token(settings, "ops", "read")  # bearer auth on: /mcp answers 401 without a token
    async with serving(settings, Metrics(process=False)) as url:
        live = await get(f"{url}/healthz", Host="10.244.1.7:8000")  # a kubelet probes the pod's IP
        mcp = await get(f"{url}/mcp", Host="10.244.1.7:8000")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert live.headers["cache-control"] == "no-store"
    assert mcp.status_code in (401, 421)


async def test_readyz_is_ok_when_the_store_and_the_cluster_answer(settings):
    async with serving(settings, Metrics(process=False)) as url:
        ready = await get(f"{url}/readyz", Host="10.244.1.7:8000")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok", "checks": {"store": {"status": "ok"}, "cluster": {"status": "ok"}}}


async def test_readyz_names_an_unreachable_cluster_and_nothing_else(tmp_path):
    closed = free_port()  # nothing listens there
    settings = offline(tmp_path, readiness_cache_seconds=60)
    settings = settings.model_copy(
        update={"k8s": settings.k8s.model_copy(update={"kubeconfig": unreachable_kubeconfig(tmp_path / "kc", closed)})}
    )
    metrics = Metrics(process=False)
    async with serving(settings, metrics) as url:
        answers: list[httpx.Response] = []

        async def probe() -> None:
            answers.append(await get(f"{url}/readyz"))

        async with anyio.create_task_group() as tg:  # a probe storm
            for _ in range(20):
                tg.start_soon(probe)
        scraped = await get(f"{url}/metrics")
    assert {a.status_code for a in answers} == {503}
    body = answers[0].json()
    assert body == {
        "status": "failed",
        "checks": {"store": {"status": "ok"}, "cluster": {"status": "failed", "reason": "unreachable"}},
    }
    for text in {a.text for a in answers}:
        assert "127.0.0.1" not in text and str(closed) not in text and SECRET not in text and "http" not in text
    found = samples(scraped.text)
    # twenty probes, one check: the rest waited for it and took its result
    assert value(found, "cloudpilot_readiness_checks_total", component="cluster", status="failed") == 1


async def test_readyz_times_out_on_an_api_server_that_never_answers(tmp_path):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        kubeconfig = unreachable_kubeconfig(tmp_path / "kc", silent.getsockname()[1])
        settings = offline(tmp_path, readiness_timeout_seconds=0.5)
        settings = settings.model_copy(update={"k8s": settings.k8s.model_copy(update={"kubeconfig": kubeconfig})})
        async with serving(settings, Metrics(process=False)) as url:
            started = time.monotonic()
            ready = await get(f"{url}/readyz")
            took = time.monotonic() - started
    assert ready.status_code == 503
    assert ready.json()["checks"]["cluster"] == {"status": "failed", "reason": "timeout"}
    assert took < 3


# -- metrics --------------------------------------------------------------------------------------------------


async def test_metrics_count_tool_calls_errors_latency_and_cache_hits(settings, namespace):
    metrics = Metrics(process=False)
    async with serving(settings, metrics) as url:
        async with session(url) as client:
            first = await client.call_tool("cluster_overview", {})
            second = await client.call_tool("cluster_overview", {})  # from the runtime's cache
            missing = await client.call_tool("pod_get", {"name": "ghost", "namespace": namespace})
            unknown = await client.call_tool("pods_lsit", {})
        scraped = await get(f"{url}/metrics")
    assert not first.isError and not second.isError and missing.isError and unknown.isError
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(scraped.text)
    assert value(found, "cloudpilot_tool_calls_total", tool="cluster_overview", outcome="ok") == 2
    assert value(found, "cloudpilot_tool_calls_total", tool="pod_get", outcome="error") == 1
    assert value(found, "cloudpilot_tool_errors_total", tool="pod_get", error_type="not_found") == 1
    assert value(found, "cloudpilot_tool_errors_total", tool="unknown", error_type="invalid_input") == 1
    assert value(found, "cloudpilot_tool_call_duration_seconds_count", tool="cluster_overview") == 2
    assert value(found, "cloudpilot_tool_call_duration_seconds_bucket", tool="cluster_overview", le="+Inf") == 2
    buckets = [k for k in found if k[0] == "cloudpilot_tool_call_duration_seconds_bucket"]
    assert len({dict(labels)["le"] for _, labels in buckets}) >= 10
    assert value(found, "cloudpilot_cache_lookups_total", cache="overview", result="miss") == 1
    assert value(found, "cloudpilot_cache_lookups_total", cache="overview", result="hit") == 1
    assert value(found, "cloudpilot_tool_calls_in_flight") == 0
    for hook in ("cloudpilot_agent_runs", "cloudpilot_notifications", "cloudpilot_events_processed"):
        assert f"# TYPE {hook}_total counter" in scraped.text
    assert "pods_lsit" not in scraped.text and namespace not in scraped.text  # labels name code, never input


async def test_metrics_need_a_read_token_when_tokens_are_on_unless_public(tmp_path):
    settings = offline(tmp_path)
    token = add_token(settings, "prometheus", "read")
    async with serving(settings, Metrics(process=False)) as url:
        anonymous = await get(f"{url}/metrics")
        wrong = await get(f"{url}/metrics", Authorization="Bearer cpt_not-a-token")
        scraper = await get(f"{url}/metrics", Authorization=f"Bearer {token}")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer ")
    assert wrong.status_code == 401
    assert scraper.status_code == 200 and "cloudpilot_tool_calls_in_flight" in scraper.text

    public = with_server(offline(tmp_path), metrics_public=True)
    async with serving(public, Metrics(process=False)) as url:
        open_scrape = await get(f"{url}/metrics")
        still_closed = await get(f"{url}/mcp")
    assert open_scrape.status_code == 200 and "cloudpilot_build_info" in open_scrape.text
    assert still_closed.status_code == 401  # only /metrics is opened


# -- a server process of its own ------------------------------------------------------------------------------


def env_for(kubeconfig: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "CLOUDPILOT_STORE__PATH": str(tmp_path / "cloudpilot.db"),
        "CLOUDPILOT_SERVER__TOOLSETS": '["core"]',
        **extra,
    }


@asynccontextmanager
async def process(
    args: list[str], env: dict[str, str], log: Path
) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """A server process on a free loopback port, its stderr in `log`; killed if the test did not end it."""
    port = free_port()
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*args, "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with anyio.fail_after(60):
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if (await get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


async def test_json_logs_are_one_object_a_line_with_principal_and_tool_and_no_secret(cluster, tmp_path):
    env = env_for(cluster.kubeconfig, tmp_path, CLOUDPILOT_SERVER__LOG_FORMAT="json")
    token = add_token(Settings(store={"path": tmp_path / "cloudpilot.db"}), "ops", "read")
    log = tmp_path / "stderr.log"
    async with process([sys.executable, str(REPO / "server.py")], env, log) as (proc, url):
        async with session(url, token) as client:
            refused = await client.call_tool("pod_get", {"name": SECRET, "namespace": "default"})
            listed = await client.call_tool("pods_list", {"namespace": "kube-system"})
        assert refused.isError and not listed.isError
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert SECRET not in text and token not in text and token.removeprefix(auth.PREFIX) not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(line["time"].endswith("Z") and "T" in line["time"] for line in lines)
    refusal = [line for line in lines if line["logger"] == "cloudpilot.calls" and "refused" in line["message"]]
    assert refusal and refusal[0]["principal"] == "ops (token)" and refusal[0]["tool"] == "pod_get"
    assert refusal[0]["level"] == "INFO" and "***" in refusal[0]["message"]
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines are JSON too
    assert not any("/healthz" in line["message"] for line in lines)  # probes leave no access line


SLOW_SERVER = """
import asyncio, dataclasses, functools, os, pathlib, sys
sys.path.insert(0, {repo!r})
from tools import catalogue

catalogue.load_all()
spec = catalogue.CATALOGUE["cluster_info"]
marker = pathlib.Path(sys.argv[1])


@functools.wraps(spec.fn)
async def slow(**kwargs):  # cluster_info, late
    marker.write_text("started")
    await asyncio.sleep(float(os.environ["SLOW_SECONDS"]))
    return await spec.fn(**kwargs)


catalogue.CATALOGUE["cluster_info"] = dataclasses.replace(spec, fn=slow)
import server

server.main(sys.argv[2:])
"""


async def test_sigterm_lets_the_call_in_flight_finish_then_exits_0(cluster, tmp_path):
    launcher = tmp_path / "slow_server.py"
    launcher.write_text(SLOW_SERVER.format(repo=str(REPO)))
    marker = tmp_path / "started"
    env = env_for(cluster.kubeconfig, tmp_path, CLOUDPILOT_SERVER__SHUTDOWN_GRACE_SECONDS="20", SLOW_SECONDS="1.5")
    log = tmp_path / "stderr.log"
    async with process([sys.executable, str(launcher), str(marker)], env, log) as (proc, url):
        port = int(url.rsplit(":", 1)[1])
        result: dict[str, Any] = {}
        async with session(url) as client:
            await client.list_tools()  # the SDK checks answers against the tools' schemas: fetch them now

            async def call() -> None:
                result["answer"] = await client.call_tool("cluster_info", {})

            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                with anyio.fail_after(30):
                    while not marker.exists():
                        await anyio.sleep(0.02)
                proc.send_signal(signal.SIGTERM)  # the call is in flight
                await anyio.sleep(0.4)
                with socket.socket() as probe:
                    refused = probe.connect_ex(("127.0.0.1", port))  # no new connections while draining
                assert proc.poll() is None, "exited with a call in flight"
        code = proc.wait(timeout=30)
    answer = result["answer"]
    assert refused != 0
    assert not answer.isError, answer.content
    assert answer.structuredContent["nodes_total"] >= 3
    assert code == 0, log.read_text()
    assert "finishing 1 tool call(s) in flight" in log.read_text()


async def test_a_call_that_outlasts_the_grace_period_is_cut_and_the_process_still_exits_0(cluster, tmp_path):
    launcher = tmp_path / "slow_server.py"
    launcher.write_text(SLOW_SERVER.format(repo=str(REPO)))
    marker = tmp_path / "started"
    env = env_for(cluster.kubeconfig, tmp_path, CLOUDPILOT_SERVER__SHUTDOWN_GRACE_SECONDS="0.5", SLOW_SECONDS="60")
    log = tmp_path / "stderr.log"

    async def call(url: str) -> None:  # its answer never comes; how the client learns of it is the client's affair
        with contextlib.suppress(Exception):
            async with session(url) as client:
                await client.list_tools()
                await client.call_tool("cluster_info", {})

    async with (
        process([sys.executable, str(launcher), str(marker)], env, log) as (proc, url),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(call, url)
        with anyio.fail_after(30):
            while not marker.exists():
                await anyio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await anyio.to_thread.run_sync(proc.wait, 30)
        took = time.monotonic() - started
        tg.cancel_scope.cancel()
    assert code == 0, log.read_text()
    assert took < 5  # the grace period and a little, not the call's minute
    assert "grace period over, 1 tool call(s) cut short" in log.read_text()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_format_setting(fmt, monkeypatch):
    monkeypatch.setenv("CLOUDPILOT_SERVER__LOG_FORMAT", fmt)
    assert Settings().server.log_format == fmt
    monkeypatch.setenv("CLOUDPILOT_SERVER__LOG_FORMAT", "xml")
    with pytest.raises(ValueError):
        Settings()


async def test_agent_runs_notifications_and_events_are_counted_in_the_process_metrics(tmp_path):
    """The layers above the tools count through the process's METRICS: a team run by the asker's transport and
    reply, each sink's delivery, each signal by what it did to an incident."""
    from agents.api import Team
    from notifiers.log import LogNotifier
    from ops.metrics import METRICS
    from runtime import Principal, Runtime
    from tests.watch.test_pipeline import TOKEN, alerts
    from watch.pipeline import Pipeline
    from watch.receivers import receivers

    def value(name: str, **labels: str) -> float:
        return METRICS.registry.get_sample_value(name, labels) or 0.0

    counted = {
        "answered": ("cloudpilot_agent_runs_total", {"source": "slack", "outcome": "answered"}),
        "opened": ("cloudpilot_events_processed_total", {"source": "alertmanager", "result": "opened"}),
        "repeat": ("cloudpilot_events_processed_total", {"source": "alertmanager", "result": "repeat"}),
        "sent": ("cloudpilot_notifications_total", {"channel": "log", "outcome": "sent"}),
    }
    before = {what: value(name, **labels) for what, (name, labels) in counted.items()}

    rt = Runtime(Settings(store={"path": tmp_path / "s.db"}, k8s={"kubeconfig": tmp_path / "none"}))
    try:
        async with Team.open(rt, sinks=[]) as team:  # no model: the team still answers (and says how to add one)
            await team.ask("why is checkout slow?", user=Principal("U1", frozenset({"read"}), transport="slack"))
        app = receivers(Pipeline(rt, sinks=[LogNotifier()]), "c1", TOKEN, max_body=100_000)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watch") as http:
            for _ in range(2):  # the same alert twice: one incident, then a repeat
                answer = await http.post(
                    "/alertmanager", json=alerts("firing", "HighLatency"), headers={"Authorization": f"Bearer {TOKEN}"}
                )
                assert answer.status_code == 200, answer.text
    finally:
        rt.close()
    after = {what: value(name, **labels) for what, (name, labels) in counted.items()}
    assert {what: after[what] - before[what] for what in counted} == {
        "answered": 1.0,
        "opened": 1.0,
        "repeat": 1.0,
        "sent": 1.0,
    }
