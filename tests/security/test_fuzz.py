"""Schema-driven fuzzing of every tool through the real MCP protocol, on the test control plane.

Arguments come from each tool's own inputSchema (hypothesis-jsonschema), half of them valid and half made
invalid on purpose (unknown names, non-finite and huge numbers, oversized strings, deep nesting, wrong
types, shell and path tricks). Write tools run in plan-only mode (no approval method is enabled), so the
cluster must come out unchanged. For every call: no traceback or internal names in the answer, structured
content valid against the tool's outputSchema, the answer within the output caps, no seeded secret in it,
and the server still answering.
"""

from __future__ import annotations

import json
import math
import os
import random
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import jsonschema
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, seed, settings
from hypothesis_jsonschema import from_schema
from kubernetes import client as kclient
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session

from server import build_server
from settings import Settings
from tests.cluster import states
from tests.tools.conftest_istio import mesh  # noqa: F401 - fixture

EXAMPLES_PER_TOOL = 48  # 45 tools: over 2,000 calls
HEAVY = {"forecast_series": 24, "rca_from_csv": 24}  # model fits of a second or more: fewer examples
SECRET = "fz-Sup3r-s3cret-Pa55w0rd-9f8e7d"
ENV_SECRET = "fz-env-h1dden-value-41b2c3"
FORBIDDEN_IN_ANSWERS = (
    "Traceback",
    'File "',
    "ValidationError",
    "pydantic",
    "errors.pydantic.dev",
    "KeyError",
    "TypeError",
    "AttributeError",
    "IndexError",
    "ValueError",
    "NoneType",
    "object has no attribute",
    "<class ",
    "tools.",
    "engines.",
    SECRET,
    ENV_SECRET,
)
OBJECTS = [("Deployment", "web"), ("Secret", "db"), ("ConfigMap", "app"), ("Pod", "web"), ("Namespace", "$ns")]
HOSTILE_VALUES: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    2**64,
    -(2**63),
    -1,
    0,
    "",
    " ",
    "x" * 300,
    "a" * 1_100_000,
    "../../../../etc/passwd",
    "$(touch /tmp/cloudpilot-fuzz-marker)",
    "`id`; rm -rf /",
    "Bad_Name!",
    "kube-system",
    "\x00\x01\u202e",
    "ｓｈｏｐ",
    None,
    True,
    [],
    {},
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    {"$ref": "#/x"},
    "0" * 64,
    "eyJhbGciOiJIUzI1NiJ9." + "a" * 50_000,
]


@pytest.fixture(scope="module")
def world(
    cluster: Any, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A namespace with a Deployment (one secret-looking env value), a Secret and a ConfigMap; a server on it."""
    request.getfixturevalue("mesh")  # Istio and Gateway API CRDs, so the Istio tools get past "not installed"
    ns = f"fz-{uuid.uuid4().hex[:6]}"
    core, apps = cluster.core, cluster.apps
    core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=ns)))
    core.create_namespaced_secret(ns, {"metadata": {"name": "db"}, "stringData": {"password": SECRET}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "app"}, "data": {"mode": "fast"}})
    dep = states.deployment("web")
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "DB_PASSWORD", "value": ENV_SECRET}]
    apps.create_namespaced_deployment(ns, dep)
    states.make_pod(
        core,
        ns,
        "web",
        containers=[{"name": "main", "image": "web:1", "env": [{"name": "API_TOKEN", "value": ENV_SECRET}]}],
    )
    states.set_pod_status(core, ns, "web", containers=[states.crashloop()])
    settings_ = Settings(
        k8s={"kubeconfig": cluster.kubeconfig, "context": None},
        store={"path": tmp_path_factory.mktemp("fuzz") / "cloudpilot.db"},
        safety={"allow_write": True, "allow_destructive": True},
        fix={"approval": []},  # plan-only: nothing can be approved, so nothing is applied
    )
    with start_blocking_portal() as portal:
        connected = portal.wrap_async_context_manager(
            create_connected_server_and_client_session(build_server(settings_))
        )
        session = connected.__enter__()
        try:
            tools = {t.name: t for t in portal.call(session.list_tools).tools}
            before = _versions(cluster, ns)
            yield {"portal": portal, "session": session, "tools": tools, "ns": ns, "settings": settings_}
            assert _versions(cluster, ns) == before, "a fuzzed call changed the cluster"
        finally:
            connected.__exit__(None, None, None)
            core.delete_namespace(ns)


def _versions(cluster: Any, ns: str) -> dict[str, str]:
    out = {}
    for kind, items in (
        ("deploy", cluster.apps.list_namespaced_deployment(ns).items),
        ("secret", cluster.core.list_namespaced_secret(ns).items),
        ("cm", cluster.core.list_namespaced_config_map(ns).items),
    ):
        for obj in items:
            out[f"{kind}/{obj.metadata.name}"] = str(obj.metadata.generation or obj.metadata.resource_version)
    return out


def _names(schema: dict[str, Any]) -> list[str]:
    return list((schema.get("properties") or {}).keys())


def _shape(args: dict[str, Any], schema: dict[str, Any], ns: str, rng: random.Random, mode: int) -> dict[str, Any]:
    """Make schema-valid `args` realistic (mode 0-1: real namespace and names, no random cluster), keep them as
    generated (mode 2), or break them on purpose (mode 3: unknown name, hostile value, missing required)."""
    names = _names(schema)
    args = dict(args)
    if mode in (0, 1):
        args.pop("cluster", None)  # random cluster names only ever reach "unknown cluster"
        args.pop("continue_token", None)
        if "namespace" in names:
            args["namespace"] = ns
        kind, name = rng.choice(OBJECTS)
        if "name" in names:
            args["name"] = name if name != "$ns" else ns
        if "kind" in names and (mode == 1 or "kind" in (schema.get("required") or [])):
            args["kind"] = kind
        if "values" in names and "query" in names:
            args.pop("query", None)
            args["values"] = [100 + 20 * math.sin(i / 10) + rng.random() for i in range(rng.choice([30, 300]))]
            args["step_seconds"] = 60
            args["horizon_minutes"] = rng.choice([5, 15])
        if "csv_text" in names:
            args["csv_text"] = _incident_csv(rng)
            args.pop("anomaly_time", None)
        return args
    if mode == 2:
        return args
    how = rng.choice(["unknown", "replace", "replace", "replace", "drop"])
    required = schema.get("required") or []
    if how == "unknown" or not names:
        args[rng.choice(["namespce", "nmae", "limit_", "__proto__", "x" * 200])] = 1
    elif how == "drop" and required:
        args.pop(rng.choice(required), None)
    else:
        args[rng.choice(names)] = rng.choice(HOSTILE_VALUES)
    return args


def _incident_csv(rng: random.Random) -> str:
    """A small incident in the RCAEval layout: three services, the second one's latency jumps at row 80."""
    rows = ["time,cart_latency,payment_latency,front_cpu"]
    for i in range(120):
        jump = 400 if i >= 80 else 0
        rows.append(f"{1700000000 + 15 * i},{50 + rng.random()},{40 + jump + rng.random()},{0.2 + rng.random() / 10}")
    return "\n".join(rows)


def _tool_names() -> list[str]:
    from tools.catalogue import load_all

    return sorted(n for n in load_all())


@pytest.mark.cluster
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", _tool_names())
def test_fuzzed_calls_get_clean_bounded_valid_answers(world: dict[str, Any], name: str) -> None:
    tools = world["tools"]
    if name not in tools:
        pytest.fail(f"{name} is not listed by a server with writes and deletions on")
    tool = tools[name]
    portal: BlockingPortal = world["portal"]
    session: ClientSession = world["session"]
    out = world["settings"].output
    calls = {"n": 0, "errors": 0}
    rng = random.Random(f"{name}-20261203")

    @seed(20261203)
    @settings(
        max_examples=HEAVY.get(name, EXAMPLES_PER_TOOL),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(generated=from_schema(tool.inputSchema, allow_x00=False))
    def one_call(generated: dict[str, Any]) -> None:
        mode = calls["n"] % 4
        args = _shape(generated, tool.inputSchema, world["ns"], rng, mode)
        calls["n"] += 1
        result = portal.call(_call, session, name, args)
        text = "".join(c.text for c in result.content if c.type == "text")
        shown = json.dumps(args, default=str)[:300]
        for bad in FORBIDDEN_IN_ANSWERS:
            assert bad not in text, f"{name}({shown}) answered with {bad!r}: {text[:800]}"
        assert len(text) <= out.max_chars + 200, f"{name}({shown}): {len(text)} chars of text"
        if result.isError:
            calls["errors"] += 1
            if mode < 2 and os.environ.get("FUZZ_DEBUG"):
                print(name, shown[:150], "->", text[:200])
            assert result.structuredContent is None
            return
        assert result.structuredContent is not None, f"{name}({shown}) returned no structured content"
        jsonschema.validate(result.structuredContent, tool.outputSchema)
        size = len(json.dumps(result.structuredContent))
        assert size <= out.max_structured_bytes + 1_000, f"{name}({shown}): {size} bytes structured"
        dumped = json.dumps(result.structuredContent)
        assert SECRET not in dumped and ENV_SECRET not in dumped, f"{name}({shown}) leaked a secret"

    one_call()
    print(f"{name}: {calls['n']} calls, {calls['errors']} errors")
    assert calls["n"] >= (HEAVY.get(name, EXAMPLES_PER_TOOL) // 2 if tool.inputSchema.get("properties") else 1)
    alive = portal.call(_call, session, "clusters_list", {})
    assert not alive.isError, "the server stopped answering"


async def _call(session: ClientSession, name: str, args: dict[str, Any]) -> Any:
    with anyio.fail_after(90):
        return await session.call_tool(name, args)
