"""Errors that a model and a person can act on.

Every message names what failed (cluster, namespace, kind, name), quotes the API server where it spoke,
and says what to try next. Whether to retry lives in the type::

    CloudPilotError
     ├── PermanentError            retrying the same call will fail the same way
     │    ├── InvalidInput         rejected before any API call (the rule broken is in the message)
     │    ├── NotFound             404: the object, kind or cluster does not exist
     │    ├── Forbidden            403: names the verb, the resource and the identity used
     │    ├── NotAllowed           CloudPilot's own safety settings refuse it (read-only, protected namespace)
     │    └── Unsupported          the cluster does not serve the API (no metrics.k8s.io, no Istio CRDs)
     └── TemporaryError(delay)     may succeed later
          ├── Conflict             409: the object changed; re-read and plan again
          └── Unreachable          connection refused, TLS failure, timeout, 5xx, 429
"""

from __future__ import annotations

from typing import Any

QUOTE_CHARS = 80  # the most of a caller's input any error message repeats


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A short, printable prefix of caller input for an error message (the rest is counted, not shown)."""
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "\\n")
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text)} chars)"


class CloudPilotError(Exception):
    """Base of all errors a tool reports to its caller."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class PermanentError(CloudPilotError):
    """Retrying the same call unchanged will not help."""


class InvalidInput(PermanentError):
    """The arguments break a rule; nothing was sent to the cluster."""


class NotFound(PermanentError):
    """The object, kind, namespace or cluster does not exist."""


class Forbidden(PermanentError):
    """The identity in use lacks the permission (HTTP 403)."""


class NotAllowed(PermanentError):
    """CloudPilot's own safety settings refuse the operation."""


class Unsupported(PermanentError):
    """The cluster does not serve the API this needs."""


class TemporaryError(CloudPilotError):
    """May succeed when tried again after `delay` seconds."""

    def __init__(self, message: str, *, hint: str | None = None, delay: float = 1.0) -> None:
        super().__init__(message, hint=hint)
        self.delay = delay


class Conflict(TemporaryError):
    """The object changed since it was read (HTTP 409)."""


class Unreachable(TemporaryError):
    """The cluster did not answer, or answered with a server error."""
