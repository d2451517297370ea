"""An operator's description of a problem (an event or error text, as in an auto-fix request) mapped to the
diagnosis codes it can be about, so the plan addresses what was reported and not everything nearby."""

from __future__ import annotations

import re

_PATTERNS: list[tuple[re.Pattern[str], set[str]]] = [
    (
        re.compile(r"probe (failed|errored).*(statuscode: [45]\d\d|connection refused|no such host)", re.I),
        {"POD_PROBE_BAD_TARGET"},
    ),
    (re.compile(r"probe (failed|errored).*(timeout|deadline exceeded)", re.I), {"POD_PROBE_AGGRESSIVE"}),
    (
        re.compile(r"(liveness|readiness|startup) probe|unhealthy", re.I),
        {"POD_PROBE_BAD_TARGET", "POD_PROBE_AGGRESSIVE", "POD_PROBE_FAILING"},
    ),
    (
        re.compile(r"insufficient (cpu|memory)|failedscheduling|unschedulable|pending", re.I),
        {"POD_INSUFFICIENT_RESOURCES"},
    ),
    (re.compile(r"oomkilled|out of memory|exit code 137", re.I), {"POD_OOMKILLED"}),
    (
        re.compile(r"imagepullbackoff|errimagepull|failed to pull image|invalidimagename", re.I),
        {"POD_IMAGE_NOT_FOUND", "POD_IMAGE_PULL", "POD_REGISTRY_AUTH", "POD_PULL_SECRET_MISSING"},
    ),
    (
        re.compile(r"crashloopbackoff|back-off restarting failed container|crash", re.I),
        {"POD_CRASHLOOP", "POD_OOMKILLED", "POD_PROBE_BAD_TARGET", "POD_PROBE_AGGRESSIVE", "DEPLOY_ROLLOUT_STUCK"},
    ),
    (
        re.compile(r"(configmap|secret) \S* ?not found|couldn't find key|createcontainerconfigerror", re.I),
        {"POD_CONFIG_MISSING"},
    ),
    (re.compile(r"progressdeadlineexceeded|rollout", re.I), {"DEPLOY_ROLLOUT_STUCK", "POD_IMAGE_NOT_FOUND"}),
    # the seeds' operators write in Chinese: 探针 probe, 路径 path, 频率 frequency, 资源请求 resource requests
    (re.compile(r"探针.*(路径|不存在|404|端口)|(路径|端口).*(不存在|错误)"), {"POD_PROBE_BAD_TARGET"}),
    (re.compile(r"探针.*(频率|太频繁|过于频繁|超时)|(频率|间隔)过(高|短)"), {"POD_PROBE_AGGRESSIVE"}),
    (re.compile(r"资源(请求)?(过高|太高|不足)|无法调度|调度失败"), {"POD_INSUFFICIENT_RESOURCES"}),
    (re.compile(r"内存(溢出|不足)|OOM"), {"POD_OOMKILLED"}),
    (re.compile(r"镜像.*(拉取|不存在|失败)"), {"POD_IMAGE_NOT_FOUND", "POD_IMAGE_PULL"}),
]


def codes_for_text(text: str | None) -> set[str] | None:
    """The finding codes a description points at; None when it names nothing recognisable."""
    if not text:
        return None
    codes: set[str] = set()
    for pattern, found in _PATTERNS:
        if pattern.search(text):
            codes |= found
    return codes or None
