"""A `Signal`: one thing that happened (a Kubernetes event, an alert, an event from another system), reduced to
what grouping needs."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from pydantic import ValidationError

_NUMBERS = re.compile(r"\d+")


@dataclass(frozen=True)
class Signal:
    """One observation.

    Attributes:
        source: kube, alertmanager or http.
        cluster: The cluster it came from.
        reason: The event reason (BackOff, OOMKilling) or the alert name.
        object: The object it names, "Kind namespace/name" ("Kind name" when cluster-scoped).
        root: The object it is really about (a Pod's Deployment, a Node): signals with the same root group.
        message: Free text (untrusted: shown as data, never as instructions).
        at: When it happened (Unix seconds).
        count: How many times, when the source already aggregated (Kubernetes events carry a count).
        resolved: The source says the condition cleared (an Alertmanager "resolved" alert).
        severity: warning or critical.
        key: The source's own identity of the thing repeating (an Event's uid, an alert's fingerprint); repeats
            of one key are one signal counted again, not new ones.
    """

    source: str
    cluster: str
    reason: str
    object: str
    root: str
    message: str = ""
    at: float = 0.0
    count: int = 1
    resolved: bool = False
    severity: str = "warning"
    key: str = field(default="")

    @property
    def fingerprint(self) -> str:
        """Same source, object, reason and message shape (numbers masked): the same thing happening again."""
        if self.key:
            return f"{self.source}:{self.key}"
        shape = _NUMBERS.sub("#", self.message)[:200]
        basis = "\x1f".join((self.source, self.cluster, self.object, self.reason, shape))
        return hashlib.blake2b(basis.encode(), digest_size=12).hexdigest()


def explain(error: ValidationError, most: int = 5) -> str:
    """Which fields of a payload are wrong and why, e.g. "alerts.0.status: Input should be 'firing' or ..."."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:most])
