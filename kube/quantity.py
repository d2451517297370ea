"""Kubernetes resource quantities (`100m`, `1.5Gi`, `2k`, `1e3`, `12E`), parsed exactly."""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_FORM = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE])?$")
GIB = Decimal(2**30)


class QuantityError(ValueError):
    """Text that is not a Kubernetes quantity."""


def parse_quantity(text: str | int | float) -> Decimal:
    """The exact value of a quantity: `parse_quantity("1.5Gi") == 1610612736`."""
    if isinstance(text, (int, float)):
        return Decimal(str(text))
    return _parse(text)


@functools.lru_cache(maxsize=4096)  # clusters repeat a handful of quantities thousands of times
def _parse(text: str) -> Decimal:
    match = _FORM.match(text.strip())
    if not match:
        raise QuantityError(f"{text!r} is not a Kubernetes quantity (e.g. 250m, 1.5Gi, 2, 1e3).")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation as e:  # pragma: no cover - the regex admits only valid decimals
        raise QuantityError(f"{text!r} is not a Kubernetes quantity.") from e
    if suffix in _BINARY:
        return value * _BINARY[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return value.scaleb(int(suffix[1:]))
    return value * _DECIMAL[suffix]


def cores(text: str | None) -> Decimal:
    """CPU in cores (`250m` → 0.25); 0 when absent."""
    return parse_quantity(text) if text else Decimal(0)


def gib(text: str | None) -> Decimal:
    """Memory in GiB (`512Mi` → 0.5); 0 when absent."""
    return parse_quantity(text) / GIB if text else Decimal(0)
