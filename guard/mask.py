"""Keep secrets on the server: Secret data, credential-like env values and annotations are masked."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SENSITIVE_NAME = re.compile(
    r"pass(word|wd)?|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|credential|auth(?!or)|pwd|"
    r"dsn|conn(ection)?[-_]?str|cookie|session[-_]?key|signing[-_]?key",
    re.I,
)
_CREDENTIAL_VALUE = re.compile(
    r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{4,}"  # JWT
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)"
    r"|\b(AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bxox[abposr]-[\w-]{10,}"  # Slack
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|\bsk-[A-Za-z0-9_-]{20,}"
)  # OpenAI-style keys
_URL_PASSWORD = re.compile(r"(\w+://[^/\s:@]+:)([^/\s@]+)(@)")
_ASSIGNMENT = re.compile(
    r"(?i)\b((?:[\w.-]*?)(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[\w.-]*\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"
)
_DROPPED_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}


def mask_text(text: str) -> str:
    """Mask credential-looking values inside free text (logs, event messages, annotation values)."""
    text = _CREDENTIAL_VALUE.sub(MASK, text)
    text = _URL_PASSWORD.sub(rf"\1{MASK}\3", text)
    return _ASSIGNMENT.sub(rf"\1{MASK}", text)


def sensitive_name(name: str) -> bool:
    return bool(_SENSITIVE_NAME.search(name))


def redact(obj: Any) -> Any:
    """A copy of a Kubernetes object (or list) safe to show: nothing secret survives."""
    if isinstance(obj, list):
        return [redact(o) for o in obj]
    if not isinstance(obj, dict):
        return obj
    out = _walk(obj)
    if obj.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if isinstance(obj.get(key), dict):
                out[key] = {k: f"<redacted: {len(v or '')} chars>" for k, v in obj[key].items()}
    return out


def _walk(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        if key == "annotations":
            return {k: _annotation(k, v) for k, v in node.items()}
        if "name" in node and ("value" in node or "valueFrom" in node) and isinstance(node.get("value"), str):
            # an env var: {"name": ..., "value": ...}
            masked = dict(node)
            masked["value"] = MASK if sensitive_name(node["name"]) else mask_text(node["value"])
            return masked
        return {k: _walk(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, key) for v in node]
    if isinstance(node, str):
        return mask_text(node) if len(node) > 8 else node
    return node


def _annotation(name: str, value: Any) -> Any:
    if name in _DROPPED_ANNOTATIONS:
        return "<omitted>"
    if not isinstance(value, str):
        return value
    return MASK if sensitive_name(name.rsplit("/", 1)[-1]) else mask_text(value)
