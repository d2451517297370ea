"""Every Prometheus metric of the server, declared here and nowhere else.

`Metrics()` holds its own `CollectorRegistry` (never prometheus_client's global one), so a test can make a fresh
set and read exact numbers. The process has one, `METRICS`, which the MCP server serves at `/metrics`; other
layers count through it too (`METRICS.notifications.labels(channel="slack", outcome="sent").inc()`). This module
imports no project code but `errors`, so any layer may import it.

Labels carry names from code only (tools, error classes, cache kinds, channels), never a caller, a cluster or an
argument: a scrape reveals what the server does, not who asked or about what.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector

from errors import CloudPilotError

# Tool calls run from milliseconds (a cached listing) to minutes (an RCA over many pods).
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format every Prometheus version scrapes


class Metrics:
    """One registry and the metrics in it."""

    def __init__(self, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:  # CPU, memory, open files, start time: what an operator expects beside the app's own
            ProcessCollector(registry=r)
        self.build = Info("cloudpilot_build", "CloudPilot's version.", registry=r)

        # -- the MCP server's tool calls (server.py) --
        self.tool_calls = Counter(
            "cloudpilot_tool_calls",
            "Tool calls, by tool and outcome (ok, error, cancelled).",
            ["tool", "outcome"],
            registry=r,
        )
        self.tool_seconds = Histogram(
            "cloudpilot_tool_call_duration_seconds",
            "Time from a tool call's arrival to its answer.",
            ["tool"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self.tool_errors = Counter(
            "cloudpilot_tool_errors",
            "Tool calls that failed, by tool and error type (invalid_input, not_found, unreachable, …, internal).",
            ["tool", "error_type"],
            registry=r,
        )
        self.tools_in_flight = Gauge("cloudpilot_tool_calls_in_flight", "Tool calls running now.", registry=r)

        # -- the runtime's TTL cache (runtime.TTLCache): the cluster snapshots tools share --
        self.cache_lookups = Counter(
            "cloudpilot_cache_lookups",
            "Lookups in the runtime's cache, by kind of entry (pods, overview, …) and result (hit, miss). "
            'Hit rate: rate(…{result="hit"}) / rate(…).',
            ["cache", "result"],
            registry=r,
        )

        # -- readiness (ops/health.py) --
        self.readiness = Counter(
            "cloudpilot_readiness_checks",
            "Readiness checks run against a dependency (cached answers are not counted), by component and status.",
            ["component", "status"],
            registry=r,
        )

        # -- hooks for the other layers: declared here so every metric of the process is in one place --
        self.agent_runs = Counter(
            "cloudpilot_agent_runs",
            "Runs of the agent team, by how they started (chat, mcp, autopilot) and outcome (ok, error, interrupted).",
            ["source", "outcome"],
            registry=r,
        )
        self.notifications = Counter(
            "cloudpilot_notifications",
            "Notifications, by sink (log, webhook, chat) and outcome (sent, failed, skipped), and the chat outbox's "
            "posts by platform (slack, feishu) and outcome (delivered, wait: retried later, failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.events_processed = Counter(
            "cloudpilot_events_processed",
            "Signals taken in by the event pipeline, by source (kube, alertmanager, api) and result (opened, updated, "
            "reopened: what it did to an incident; repeat: nothing new).",
            ["source", "result"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


METRICS = Metrics()

_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def error_type(error: BaseException) -> str:
    """A metric label for an error: the CloudPilot error class in snake_case (`NotFound` → not_found), else
    `internal` (an unexpected failure: its class is in the server log, not in a label)."""
    if isinstance(error, CloudPilotError):
        return _WORD.sub("_", type(error).__name__).lower()
    return "internal"
