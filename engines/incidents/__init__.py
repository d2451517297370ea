"""Incidents from signals: what the event pipeline (issue 13) is built on, with no I/O and no clock of its own.

- `catalogue`: the Kubernetes event reasons worth waking someone for (the default filter).
- `roots`: the object a signal is really about — a Pod's owner workload, a Node, an Istio object.
- `grouping`: de-duplication, grouping into incidents by root object and time window, flapping, resolution.
- `alertmanager`: Alertmanager's webhook payload, validated, as signals.
"""

from engines.incidents.alertmanager import AlertmanagerError, signals_from_alertmanager
from engines.incidents.catalogue import CRITICAL_REASONS, is_critical
from engines.incidents.grouping import Change, Grouper, Incident
from engines.incidents.model import Signal
from engines.incidents.roots import root_of

__all__ = [
    "CRITICAL_REASONS",
    "AlertmanagerError",
    "Change",
    "Grouper",
    "Incident",
    "Signal",
    "is_critical",
    "root_of",
    "signals_from_alertmanager",
]
