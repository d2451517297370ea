"""What a metric measures, guessed from its name, and which way is "worse" for it.

- latency and errors get worse upwards (a success rate, downwards) and propagate up a call chain: a slow or
  failing callee makes its callers slow or failing, so a caller's latency or error anomaly can be
  explained by a callee;
- saturation (CPU, memory, disk, threads, restarts) gets worse upwards and is the service's own;
- traffic (requests, operations, network bytes, system calls) is suspicious either way: a fault can cut it
  (a stalled service) or inflate it (retries).
"""

from __future__ import annotations

import re

LATENCY = "latency"
ERRORS = "errors"
SATURATION = "saturation"
TRAFFIC = "traffic"

UP, DOWN, EITHER = 1, -1, 0

_PATTERNS = (
    (TRAFFIC, re.compile(r"net|byte|syscall|receive|transmit|packet", re.I)),
    (SATURATION, re.compile(r"cpu|mem|disk|fs_|thread|restart|oom|gc|fd", re.I)),
    (LATENCY, re.compile(r"lat|duration|response_time|p50|p90|p95|p99|delay", re.I)),
    (ERRORS, re.compile(r"error|success|fail|5xx|4xx|exception|status", re.I)),
)
_GOOD_WHEN_HIGH = re.compile(r"success|availability|ok_ratio", re.I)


def kind_of(metric: str) -> str:
    """One of latency, errors, saturation, traffic for a metric name (the part after `<service>_`)."""
    for kind, pattern in _PATTERNS:
        if pattern.search(metric):
            return kind
    return TRAFFIC


def direction(metric: str) -> int:
    """UP if higher is worse, DOWN if lower is worse, EITHER if both can mean trouble."""
    if _GOOD_WHEN_HIGH.search(metric):
        return DOWN
    return EITHER if kind_of(metric) == TRAFFIC else UP


def propagates(metric: str) -> bool:
    """Whether an anomaly of this metric may be caused by a callee (latency and errors do)."""
    return kind_of(metric) in (LATENCY, ERRORS)
