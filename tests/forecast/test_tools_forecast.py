"""Forecast tools: from given values, and from a real Prometheus (see conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from kubernetes import client as kclient

from errors import InvalidInput, NotFound
from runtime import Runtime, use
from settings import Settings
from tests.cluster import states
from tests.forecast.conftest import daily_rate
from tools import forecast as tools_forecast
from tools.rca import parse_when


async def test_forecast_from_prometheus_follows_the_cycle(runtime: Runtime) -> None:
    result = await tools_forecast.forecast_series(
        query="shop_requests_rate", history_days=3, step_seconds=300, horizon_minutes=30
    )
    assert result.method == "gradient boosting"
    assert result.history_points > 500
    assert len(result.points) <= tools_forecast.MAX_ROWS
    times = np.array([parse_when(p.time) for p in result.points])
    truth = daily_rate(times)
    means = np.array([p.mean for p in result.points])
    assert np.all(np.abs(means - truth) < 25)
    assert all(p.lower <= p.mean <= p.upper for p in result.points)
    assert "FORECAST" in result.render()


async def test_forecast_needs_one_series(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match="exactly one series"):
        await tools_forecast.forecast_series(query="shop_requests_rate or vector(1)", history_days=1)


async def test_forecast_from_values(tmp_path: Path) -> None:
    with use(Runtime(Settings(store={"path": tmp_path / "db"}))):
        values = [float(v) for v in daily_rate(time.time() - 300.0 * np.arange(600)[::-1])]
        result = await tools_forecast.forecast_series(values=values, step_seconds=300, horizon_minutes=30)
        assert len(result.points) == 6
        with pytest.raises(InvalidInput, match="either query or values"):
            await tools_forecast.forecast_series()
        with pytest.raises(InvalidInput, match="step_seconds"):
            await tools_forecast.forecast_series(values=[1.0, 2.0])


def test_autoscaler_matched_by_target() -> None:
    hpas = [
        {
            "metadata": {"name": "other"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 3},
        },
        {
            "metadata": {"name": "web-hpa"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 8},
        },
    ]
    found = tools_forecast._autoscaler(hpas, "web")
    assert found is not None and (found.name, found.min_replicas, found.max_replicas) == ("web-hpa", 2, 8)
    assert tools_forecast._autoscaler(hpas, "db") is None


@pytest.mark.cluster
async def test_recommend_replicas_reads_the_deployment_and_its_hpa(load_url, cluster, namespace, tmp_path) -> None:
    cluster.apps.create_namespaced_deployment(namespace, states.deployment("web", replicas=2))
    kclient.AutoscalingV2Api(cluster.api).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "web-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    }
                ],
            },
        },
    )
    settings = Settings(
        prometheus={"url": load_url},
        k8s={"kubeconfig": cluster.kubeconfig, "context": None},
        store={"path": tmp_path / "db.sqlite"},
    )
    with use(Runtime(settings)) as rt:
        # over a whole day the load peaks near 150 requests/s: 8 replicas of 20/s, more than the HPA allows
        result = await tools_forecast.recommend_replicas(
            namespace,
            "web",
            per_replica=20,
            query='shop_requests_rate{service="web"}',
            horizon_minutes=1440,
            history_days=3,
        )
        assert result.current == 2
        assert result.hpa == "web-hpa 2-5"
        # the truth peaks at 150 (noise 3); a day ahead, a few percent either way is a good forecast
        assert 140 <= result.peak_mean <= 165 and result.peak_upper >= result.peak_mean
        assert result.needed in (8, 9) and result.recommended == result.needed
        assert any("caps at 5" in n and "raise maxReplicas" in n for n in result.notes)
        with pytest.raises(NotFound, match=f'"ghost" in namespace "{namespace}"'):
            await tools_forecast.recommend_replicas(
                namespace, "ghost", per_replica=20, query='shop_requests_rate{service="web"}', history_days=1
            )
        rt.close()
