"""The one request path: arguments, permission, masking and bounds apply to every tool, whoever calls."""

from __future__ import annotations

import math
from typing import Any

import pytest

from guard import bounds
from guard.mask import MaskingFilter
from guard.pipeline import Pipeline
from runtime import LOCAL, Principal
from tests.cluster import states
from tools.catalogue import ToolSpec, enabled_tools
from tools.results import Page, Result

READER = Principal("token reader", frozenset({"read"}), "http")


@pytest.fixture
def pipeline(runtime) -> Pipeline:
    return Pipeline(runtime, enabled_tools(runtime.settings))


async def ask(pipeline: Pipeline, name: str, args: Any, who: Principal = LOCAL):
    return await pipeline.call(name, args, principal=who, client="test")


async def test_unknown_arguments_are_refused_with_the_valid_names(pipeline, namespace):
    answer = await ask(pipeline, "pods_list", {"namespce": namespace})
    assert answer.is_error and answer.structured is None
    assert "did you mean 'namespace'?" in answer.text and "label_selector" in answer.text


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e308, 2**64])
async def test_non_finite_and_huge_numbers_name_the_field(pipeline, value):
    answer = await ask(pipeline, "pods_list", {"limit": value})
    assert answer.is_error and "'limit'" in answer.text
    assert "Traceback" not in answer.text


async def test_type_errors_speak_plainly(pipeline):
    answer = await ask(pipeline, "pods_list", {"limit": "many", "problems_only": {"a": 1}})
    assert answer.is_error
    assert "argument 'limit'" in answer.text and "argument 'problems_only'" in answer.text
    for jargon in ("pydantic", "errors.pydantic.dev", "ValidationError", "Input should be"):
        assert jargon not in answer.text


async def test_text_arguments_arrive_as_sent_and_others_still_accept_json_in_a_string(pipeline):
    # MCP clients send lists and objects as JSON strings; text arguments must not be decoded on the way
    not_csv = await ask(pipeline, "rca_from_csv", {"csv_text": '{"not": "csv"}'})
    assert not_csv.is_error and "Cannot analyse the CSV" in not_csv.text  # reached the tool as a string
    spans = await ask(pipeline, "rca_from_files", {"spans": '{"resourceSpans": []}', "anomaly_time": 1e9})
    assert spans.is_error and "must be a valid string" not in spans.text and "No service" in spans.text
    listed = await ask(pipeline, "correlate_series", {"queries": '["up", 1]'})
    assert listed.is_error and "argument 'queries'" in listed.text  # decoded to a list, then judged by type


async def test_an_unknown_tool_gets_a_suggestion(pipeline):
    answer = await ask(pipeline, "pod_list", {})
    assert answer.is_error and "did you mean 'pods_list'?" in answer.text


async def test_error_quotes_only_a_short_prefix_of_the_input(pipeline):
    answer = await ask(pipeline, "pods_list", {"limit": "9" * 5000})
    assert answer.is_error and len(answer.text) < 600


async def test_a_read_only_caller_sees_and_may_call_no_write_tool(runtime, settings):
    writer = runtime.settings.model_copy(
        update={"safety": runtime.settings.safety.model_copy(update={"allow_write": True})}
    )
    runtime.settings = writer
    pipe = Pipeline(runtime, enabled_tools(writer))
    assert {"scale", "fix_apply"} <= {s.name for s in pipe.visible(LOCAL)}
    shown = {s.name for s in pipe.visible(READER)}
    assert "scale" not in shown and "fix_apply" not in shown and "pods_list" in shown
    answer = await ask(pipe, "scale", {"kind": "Deployment", "name": "x", "namespace": "y", "replicas": 1}, READER)
    assert answer.is_error and "needs 'write' access" in answer.text and "token reader" in answer.text


async def test_internal_failures_answer_with_a_reference_not_a_traceback(runtime, caplog):
    caplog.handler.addFilter(MaskingFilter())  # as server.main installs it on every handler

    async def explode() -> Result:
        """Fails on purpose."""
        raise KeyError("internal detail password=hunter2")

    spec = ToolSpec(explode, "explode", "core", "read", True, "Explode")
    answer = await ask(Pipeline(runtime, [spec]), "explode", {})
    assert answer.is_error and "reference" in answer.text
    for leak in ("KeyError", "internal detail", "hunter2", "Traceback"):
        assert leak not in answer.text
    assert "reference" in caplog.text and "hunter2" not in caplog.text


async def test_every_tool_output_is_masked_in_one_place(pipeline, cluster, namespace):
    """resources_list kind=Event printed event messages unmasked while events_list masked them."""
    states.make_pod(cluster.core, namespace, "api")
    states.make_event(
        cluster.core, namespace, "Pod", "api", "BackOff", "login failed: password=hunter2 token=abc123def"
    )
    for name, args in (
        ("resources_list", {"kind": "Event", "namespace": namespace, "output": "json"}),
        ("resources_list", {"kind": "Event", "namespace": namespace}),
        ("events_list", {"namespace": namespace}),
        ("resource_describe", {"kind": "Pod", "name": "api", "namespace": namespace}),
    ):
        answer = await ask(pipeline, name, args)
        assert not answer.is_error, answer.text
        assert "hunter2" not in answer.text and "hunter2" not in str(answer.structured), name
        assert "abc123def" not in answer.text, name


class _Rows(Result):
    rows: list[str]
    page: Page


def test_structured_content_is_bounded_with_a_resume_token():
    rows = [f"row-{i}-" + "x" * 1000 for i in range(100)]
    data = _Rows(rows=rows, page=Page(total=300, returned=100, continue_token="offset:200")).model_dump(mode="json")
    cut = bounds.bound(data, 20_000)
    assert cut["truncated"] is True and bounds.size(cut) <= 20_000
    kept = len(cut["rows"])
    assert 0 < kept < 100 and cut["rows"] == rows[:kept]
    assert cut["page"]["continue_token"] == f"offset:{100 + kept}"
    _Rows.model_validate(cut)  # still the tool's own schema


async def test_server_info_names_cloudpilot_and_its_own_version(settings):
    from importlib.metadata import version

    from mcp.shared.memory import create_connected_server_and_client_session

    from server import build_server

    async with create_connected_server_and_client_session(build_server(settings)) as client:
        info = await client.initialize()
    assert info.serverInfo.name == "cloudpilot"
    assert info.serverInfo.version == version("cloudpilot") != version("mcp")
