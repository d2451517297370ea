"""Input checks made before any API call, each naming the rule that was broken."""

from __future__ import annotations

import re

from errors import InvalidInput

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_SET_EXPR = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_EQ_EXPR = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_EXISTS = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")
_FIELD_EXPR = re.compile(r"^(?P<key>[A-Za-z0-9_.\-\[\]]+)\s*(==|=|!=)\s*(?P<value>[^,]*)$")


def is_dns_label(name: str) -> bool:
    """A DNS-1123 label: what namespaces, cluster names and many other names must be."""
    return len(name) <= 63 and bool(_DNS_LABEL.match(name))


def namespace(name: str | None) -> str | None:
    if name is None or name == "":
        return None
    if not is_dns_label(name):
        raise InvalidInput(
            f"Namespace {name!r} is invalid: a namespace is a DNS-1123 label (lowercase "
            "letters, digits and '-', starting and ending with an alphanumeric, at most 63)."
        )
    return name


def object_name(name: str, what: str = "name") -> str:
    if not name or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise InvalidInput(
            f"{what.capitalize()} {name!r} is invalid: object names are DNS-1123 subdomains "
            "(lowercase letters, digits, '-' and '.', starting and ending with an alphanumeric, "
            "at most 253)."
        )
    return name


def label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise InvalidInput(f"Label key {key!r} is invalid: its prefix must be a DNS subdomain.")
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        raise InvalidInput(
            f"Label key {key!r} is invalid: the name part must be at most 63 characters of "
            "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric."
        )


def label_value(key: str, value: str) -> None:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise InvalidInput(
            f"Label value {value!r} (key {key!r}) is invalid: at most 63 characters of "
            "alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric."
        )


def label_selector(selector: str | None) -> str | None:
    """Check a label selector (`app=web,tier!=db`, `env in (a,b)`, `!canary`) and return it unchanged."""
    if not selector:
        return None
    for part in _split(selector):
        part = part.strip()
        m = _SET_EXPR.match(part)
        if m:
            label_key(m["key"])
            for v in m["values"].split(","):
                label_value(m["key"], v.strip())
            continue
        m = _EQ_EXPR.match(part)
        if m:
            label_key(m["key"])
            label_value(m["key"], m["value"])
            continue
        m = _EXISTS.match(part)
        if m:
            label_key(m["key"])
            continue
        raise InvalidInput(
            f"Label selector {selector!r} is invalid at {part!r}: use key=value, key!=value, "
            "key in (a,b), key notin (a,b), key or !key, joined by commas."
        )
    return selector


def field_selector(selector: str | None) -> str | None:
    """Check a field selector (`status.phase=Running,spec.nodeName=node-1`) and return it unchanged."""
    if not selector:
        return None
    for part in selector.split(","):
        if not _FIELD_EXPR.match(part.strip()):
            raise InvalidInput(
                f"Field selector {selector!r} is invalid at {part!r}: use field=value or "
                "field!=value joined by commas, e.g. status.phase=Running."
            )
    return selector


def _split(selector: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    parts.append(selector[start:])
    return parts
