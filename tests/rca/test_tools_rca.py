"""The RCA tools end to end against a real Prometheus (see conftest.py for the incident)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from connections.prometheus import Prometheus, workload_of
from errors import InvalidInput, Unreachable, Unsupported
from runtime import Runtime, use
from settings import Settings
from tests.cluster import states
from tests.conftest import ClusterEnv
from tests.rca.conftest import PODS, Incident
from tests.serving import free_port
from tools import rca

CPU = 'sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="shop"}[1m]))'


@pytest.mark.anyio
async def test_rca_namespace_finds_the_saturated_workload(incident: Incident, runtime: Runtime) -> None:
    result = await rca.rca_namespace("shop", minutes=55, end=str(incident.end), service="frontend")
    assert result.candidates[0].service == "cart"
    assert result.candidates[0].score >= result.threshold
    assert result.onset_detected
    assert abs(rca.parse_when(result.anomaly_time) - incident.fault) <= 120
    metrics = {m.metric for m in result.candidates[0].evidence}
    assert metrics & {"cpu", "errors", "latency_p50", "latency_p90", "latency_p99"}
    frontend = next(c for c in result.candidates if c.service == "frontend")
    assert frontend.explained_by  # its latency is inherited from cart
    assert any("cluster events/logs unavailable" in n for n in result.notes)  # degraded, not failed
    assert any(n.startswith("frontend ranks") for n in result.notes)
    text = result.render()
    assert "cart" in text.splitlines()[2]


@pytest.mark.anyio
async def test_rca_namespace_at_a_given_time(incident: Incident, runtime: Runtime) -> None:
    result = await rca.rca_namespace("shop", minutes=55, end=str(incident.end), anomaly_time=str(incident.fault))
    assert not result.onset_detected
    assert result.candidates[0].service == "cart"


@pytest.mark.anyio
async def test_anomalies_in_query_ranks_the_cart_pod(incident: Incident, runtime: Runtime) -> None:
    result = await rca.anomalies_in_query(CPU, minutes=55, end=str(incident.end))
    assert "cart" in result.series[0].series
    assert result.series[0].score > result.series[1].score
    assert result.series[0].peak > 4 * result.series[0].baseline


@pytest.mark.anyio
async def test_correlate_series_pairs_every_series(incident: Incident, runtime: Runtime) -> None:
    result = await rca.correlate_series([CPU], minutes=55, end=str(incident.end), max_lag_steps=4)
    assert len(result.series) == 3
    assert len(result.pairs) == 3
    assert all(-1 <= p.correlation <= 1 for p in result.pairs)


@pytest.mark.anyio
async def test_bad_promql_quotes_prometheus(incident: Incident, runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"Prometheus rejected the query: .*parse error"):
        await rca.anomalies_in_query("sum(rate(", minutes=10, end=str(incident.end))


@pytest.mark.anyio
async def test_empty_namespace_is_reported(incident: Incident, runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match="no series for namespace 'ghost'"):
        await rca.rca_namespace("ghost", minutes=55, end=str(incident.end))


@pytest.mark.anyio
async def test_no_prometheus_configured_says_how(tmp_path: Path) -> None:
    with (
        use(Runtime(Settings(store={"path": tmp_path / "db"}))),
        pytest.raises(Unsupported, match="CLOUDPILOT_PROMETHEUS__URL"),
    ):
        await rca.anomalies_in_query(CPU)


def test_unreachable_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        Prometheus(Settings(prometheus={"url": url, "timeout_seconds": 2}).prometheus) as prom,
        pytest.raises(Unreachable, match=url),
    ):
        prom.query("up")


def test_query_range_checks_its_window(incident: Incident) -> None:
    with Prometheus(Settings(prometheus={"url": incident.url}).prometheus) as prom:
        with pytest.raises(InvalidInput, match="end must be after"):
            prom.query_range("up", 10, 5, 1)
        with pytest.raises(InvalidInput, match="step of at least"):
            prom.query_range("up", 0, 1e6, 1)
        assert prom.query("1 + 1") == [({}, 2.0)]


def test_workload_of_pod_names() -> None:
    assert workload_of("cart-5b7c9d8f6b-q9w8z") == "cart"
    assert workload_of("redis-0") == "redis"
    assert workload_of("node-exporter-x2x4k") == "node-exporter"
    assert workload_of("plain") == "plain"


@pytest.mark.anyio
async def test_rca_from_csv(tmp_path: Path) -> None:
    lines = ["time,web_latency,db_cpu,cache_cpu"]
    for t in range(120):
        fault = t >= 80
        lines.append(f"{t},{1 + 3 * fault + 0.01 * (t % 3)},{1 + 5 * fault + 0.01 * (t % 5)},{1 + 0.01 * (t % 4)}")
    with use(Runtime(Settings(store={"path": tmp_path / "db"}))):
        result = await rca.rca_from_csv("\n".join(lines), anomaly_time=80)
        assert result.candidates[0].service in {"db", "web"}
        assert result.candidates[-1].service == "cache"
        top_row = result.render().splitlines()[2].split()
        assert top_row[3] == result.candidates[0].onset != "-"  # times of uploaded series are shown as given
        with pytest.raises(InvalidInput, match="no `time` column"):
            await rca.rca_from_csv("a_cpu\n1\n")
        with pytest.raises(InvalidInput, match="characters"):
            await rca.rca_from_csv("x" * (rca.MAX_CSV_CHARS + 1))


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.cluster
@pytest.mark.anyio
async def test_rca_namespace_adds_the_clusters_events_and_error_log_bursts(
    incident: Incident, cluster: ClusterEnv, tmp_path: Path
) -> None:
    cp = cluster.require_control_plane()  # the fake kubelet serves the logs
    core = cluster.core
    core.create_namespace({"metadata": {"name": "shop"}})
    try:
        for workload, pod in PODS.items():
            states.make_pod(core, "shop", pod, containers=[{"name": workload, "image": "x"}])
        # cart's container was OOM-killed two minutes after the fault (a pod state change, not an event)
        oom = {"reason": "OOMKilled", "exitCode": 137, "finishedAt": _stamp(incident.fault + 120)[:19] + "Z"}
        states.set_pod_status(
            core, "shop", PODS["cart"], containers=[states.running(restarts=1, lastState={"terminated": oom})]
        )
        # cart: a Warning event a minute after the fault; a Normal one, and a Warning from before the window,
        # that must not count
        states.make_event(
            core,
            "shop",
            "Pod",
            PODS["cart"],
            "Unhealthy",
            "Readiness probe failed: HTTP 503",
            when=_stamp(incident.fault + 60)[:19] + "Z",
        )
        states.make_event(
            core,
            "shop",
            "Pod",
            PODS["cart"],
            "Pulled",
            "image pulled",
            type_="Normal",
            when=_stamp(incident.fault + 90)[:19] + "Z",
        )
        states.make_event(
            core, "shop", "Pod", PODS["cart"], "BackOff", "old trouble", when=_stamp(incident.start - 3600)[:19] + "Z"
        )
        # payment: quiet logs, then a burst of errors after the fault (its metrics stay flat)
        quiet = [f"{_stamp(t)} GET /charge 200" for t in np.arange(incident.start, incident.end, 30.0)]
        burst = [f"{_stamp(incident.fault + 20 + i)} ERROR charge failed: upstream timeout" for i in range(0, 400, 4)]
        cp.kubelet.set_log("shop", PODS["payment"], "payment", "\n".join(sorted(quiet + burst)) + "\n", stamped=True)
        cp.kubelet.set_log("shop", PODS["cart"], "cart", f"{_stamp(incident.start)} started\n", stamped=True)
        cp.kubelet.set_log("shop", PODS["frontend"], "frontend", f"{_stamp(incident.start)} started\n", stamped=True)

        settings = Settings(
            prometheus={"url": incident.url},
            k8s={"kubeconfig": cluster.kubeconfig, "context": None},
            store={"path": tmp_path / "db.sqlite"},
        )
        with use(Runtime(settings)) as rt:
            result = await rca.rca_namespace(
                "shop", minutes=55, end=str(incident.end), anomaly_time=str(incident.fault)
            )
            rt.close()
    finally:
        core.delete_collection_namespaced_pod("shop", grace_period_seconds=0)
        core.delete_namespace("shop")

    assert not any("unavailable" in n for n in result.notes), result.notes
    by_service = {c.service: c for c in result.candidates}
    # payment's logs gained an error template 100 lines strong: the logs modality puts it first, quoting the
    # template and a line; cart, with the saturated CPU, the OOM kill and the failing probe, comes next
    assert result.modalities == ["metrics", "logs"]
    assert [c.service for c in result.candidates[:2]] == ["payment", "cart"]
    assert by_service["payment"].logs and "ERROR charge failed: upstream timeout" in by_service["payment"].logs
    assert any(n.startswith("logs:") and "lines before the anomaly time" in n for n in result.notes)
    assert by_service["cart"].events == [
        "Unhealthy: Readiness probe failed: HTTP 503",
        f"OOMKilled: pod {PODS['cart']} container cart exited with code 137",
    ]
    payment = by_service["payment"]
    logs = next(m for m in payment.evidence if m.metric == "error_logs")
    assert logs.baseline == 0 and logs.peak >= 3  # about 3.75 error lines per 15 s step during the burst
    assert payment.evidence[0].metric == "error_logs"  # its strongest signal


def test_pod_state_changes_inside_the_window_only() -> None:
    pod = {
        "metadata": {"name": "cart-5b7c9d8f6b-q9w8z"},
        "status": {
            "containerStatuses": [
                {
                    "name": "cart",
                    "lastState": {
                        "terminated": {"reason": "Error", "exitCode": 2, "finishedAt": "2026-01-01T00:10:00Z"}
                    },
                }
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "ContainersNotReady",
                    "lastTransitionTime": "2026-01-01T00:05:00Z",
                },
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:06:00Z"},
            ],
        },
    }
    start = rca.parse_when("2026-01-01T00:00:00Z")
    changes = rca.pod_state_changes([pod], start, start + 900)
    assert [(c.service, c.reason, c.time - start) for c in changes] == [
        ("cart", "Error", 600.0),
        ("cart", "NotReady", 300.0),
    ]
    assert "exited with code 2" in changes[0].message and "ContainersNotReady" in changes[1].message
    assert rca.pod_state_changes([pod], start, start + 200) == []
