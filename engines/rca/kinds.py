"""What a metric measures, guessed from its name: this decides whether its anomaly can be inherited.

Latency and errors propagate up a call chain (a slow or failing callee makes its callers slow or failing),
so a caller's latency or error anomaly can be explained by a callee. Resource use (CPU, memory, network
bytes, restarts) is the service's own.
"""

from __future__ import annotations

import re

LATENCY = "latency"
ERRORS = "errors"
TRAFFIC = "traffic"
RESOURCE = "resource"

_PATTERNS = (
    (RESOURCE, re.compile(r"cpu|mem|net|byte|syscall|restart|disk|fs_|thread|gc", re.I)),
    (LATENCY, re.compile(r"lat|duration|response_time|p50|p90|p95|p99", re.I)),
    (ERRORS, re.compile(r"error|success|fail|5xx|4xx|exception|status", re.I)),
    (TRAFFIC, re.compile(r"lod|load|request|rps|qps|ops|workload|throughput|rate$", re.I)),
)


def kind_of(metric: str) -> str:
    """One of latency, errors, traffic, resource for a metric name (the part after `<service>_`)."""
    for kind, pattern in _PATTERNS:
        if pattern.search(metric):
            return kind
    return RESOURCE


def propagates(metric: str) -> bool:
    """Whether an anomaly of this metric may be caused by a callee (latency and errors do)."""
    return kind_of(metric) in (LATENCY, ERRORS)
