"""Bounded work: every input that sizes work has a cap, refused with the argument, the cap and what to do; and
answers page themselves within the output size limit instead of relying on the generic cut."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from errors import InvalidInput
from guard.pipeline import Pipeline
from runtime import LOCAL, Runtime, use
from settings import Settings
from tests.cluster import states
from tools import forecast, rca
from tools.catalogue import enabled_tools

SMALL = 20_000  # output.max_structured_bytes in the paging tests


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with no cluster and no Prometheus: a cap must refuse before anything is asked of either."""
    rt = Runtime(Settings(store={"path": tmp_path / "db"}, limits={"forecast_points": 1_000}))
    with use(rt):
        yield rt
    rt.close()


@pytest.fixture
def small(settings: Settings) -> Iterator[Pipeline]:
    """The guarded tools of a server whose structured answers may be at most SMALL bytes."""
    rt = Runtime(
        settings.model_copy(update={"output": settings.output.model_copy(update={"max_structured_bytes": SMALL})})
    )
    yield Pipeline(rt, enabled_tools(rt.settings))
    rt.close()


async def ask(pipeline: Pipeline, name: str, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(text, structured content) of a call that must succeed within the SMALL limit, paged by the tool."""
    answer = await pipeline.call(name, args, principal=LOCAL, client="test")
    assert not answer.is_error, answer.text
    assert answer.structured is not None and len(orjson.dumps(answer.structured)) <= SMALL
    assert "truncated" not in answer.structured  # the tool paged itself; the generic cut was not needed
    return answer.text, answer.structured


# -- forecasts -----------------------------------------------------------------------------------------------
async def test_forecast_horizon_is_capped_in_points(offline: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"horizon_minutes=10080 at a 1s step is 604800 points") as raised:
        await forecast.forecast_series(values=[1.0] * 50, step_seconds=1, horizon_minutes=10_080)
    assert "limits.forecast_points" in str(raised.value) and "at least 605s" in str(raised.value)


async def test_forecast_of_a_millisecond_step_is_refused_at_once(offline: Runtime) -> None:
    # the call that grew past 3 GB: 604,800,000 points asked for
    with pytest.raises(InvalidInput, match="points to predict"):
        await forecast.forecast_series(values=[1.0, 2.0, 3.0], step_seconds=0.001, horizon_minutes=10_080)


async def test_forecast_values_and_history_are_capped(offline: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"values has 1001 points; at most 1000"):
        await forecast.forecast_series(values=[1.0] * 1_001, step_seconds=60)
    with pytest.raises(InvalidInput, match=r"history_days=90 at step_seconds=1 is 7776001 points"):
        await forecast.forecast_series(query="up", step_seconds=1, history_days=90)
    with pytest.raises(InvalidInput, match="within ±1e"):
        await forecast.forecast_series(values=[1.0, 1e300], step_seconds=60)
    with pytest.raises(InvalidInput, match="between 1970 and 2100"):
        await forecast.forecast_series(values=[1.0, 2.0], step_seconds=60, end=1e14)


# -- RCA -----------------------------------------------------------------------------------------------------
async def test_rca_windows_are_capped_before_any_query(offline: Runtime) -> None:
    with pytest.raises(InvalidInput, match=r"86401 samples per series at a 1s step") as raised:
        await rca.anomalies_in_query("up", minutes=1440, step=1)
    assert "step=8" in (raised.value.hint or "")
    with pytest.raises(InvalidInput, match="samples per series"):
        await rca.correlate_series(["up", "up"], minutes=1440, step=1)
    with pytest.raises(InvalidInput, match=r"end='3000-01-01T00:00:00Z' is outside 1970\.\.2100"):
        await rca.anomalies_in_query("up", end="3000-01-01T00:00:00Z")


async def test_rca_namespace_caps_its_queries(offline: Runtime) -> None:
    many = {f"m{i}": "up" for i in range(11)}
    with pytest.raises(InvalidInput, match="queries has 11 entries; at most 10"):
        await rca.rca_namespace("shop", queries=many)
    with pytest.raises(InvalidInput, match="not a metric name"):
        await rca.rca_namespace("shop", queries={"lat@frontend": "up"})


async def test_rca_from_csv_caps_values_and_times(offline: Runtime) -> None:
    columns, rows = 1_500, 1_400  # 2,100,000 values: over MAX_CELLS, under every other CSV cap
    text = "\n".join(
        ["time," + ",".join(f"s{j}_cpu" for j in range(columns))]
        + [f"{t}," + ",".join("1" * columns) for t in range(rows)]
    )
    with pytest.raises(InvalidInput, match=r"at most 2000000 are analysed"):
        await rca.rca_from_csv(text)
    lines = ["time,a_cpu,b_cpu"] + [f"{1e300 + t},{t % 3},{t % 5}" for t in range(30)]
    with pytest.raises(InvalidInput, match="every `time` must be a number of seconds"):
        await rca.rca_from_csv("\n".join(lines))


# -- answers that page themselves within the output size limit ------------------------------------------------
async def test_resources_list_pages_by_size_and_resumes_exactly(small: Pipeline, cluster, namespace: str) -> None:
    for i in range(30):
        cluster.core.create_namespaced_config_map(
            namespace, {"metadata": {"name": f"cm-{i:02}"}, "data": {"blob": "x" * 2_000}}
        )
    seen: list[str] = []
    token = None
    for _ in range(10):
        args = {"kind": "configmaps", "namespace": namespace, "output": "json", "limit": 100}
        text, data = await ask(small, "resources_list", args | ({"continue_token": token} if token else {}))
        seen += [o["metadata"]["name"] for o in data["objects"]]
        token = data["page"]["continue_token"]
        if token is None:
            break
        assert token.startswith("skip:") and "output size limit" in text.splitlines()[1]
    assert sorted(seen) == sorted([f"cm-{i:02}" for i in range(30)] + ["kube-root-ca.crt"])


async def test_an_object_larger_than_an_answer_is_named_not_sent(small: Pipeline, cluster, namespace: str) -> None:
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "huge"}, "data": {"blob": "y" * 40_000}})
    _, listed = await ask(small, "resources_list", {"kind": "configmaps", "namespace": namespace, "output": "yaml"})
    huge = next(o for o in listed["objects"] if o["metadata"]["name"] == "huge")
    assert "resource_get" in huge["omitted"] and "data" not in huge
    _, got = await ask(small, "resource_get", {"kind": "configmap", "name": "huge", "namespace": namespace})
    assert got["text"].endswith("pass `fields` to read the rest]")


async def test_pod_logs_fit_the_output_limit_newest_kept(small: Pipeline, cluster, namespace: str) -> None:
    cp = cluster.require_control_plane()
    states.make_pod(cluster.core, namespace, "web", containers=[{"name": "app", "image": "x"}])
    log = "".join(f"\x1b[31mline {i}\x1b[0m {'z' * 30}\n" for i in range(3_000))  # escapes take 6 bytes in JSON
    cp.kubelet.set_log(namespace, "web", "app", log)
    args = {"name": "web", "namespace": namespace, "tail_lines": 10_000, "max_bytes": 10**6}
    _, logs = await ask(small, "pod_logs", args)
    assert logs["cut"] and logs["text"].endswith("line 2999\x1b[0m " + "z" * 30)
