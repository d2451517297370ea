"""The event pipeline (issue 13), at the edge of the layers — it may use the agent team only through `agents.api`,
like the bots.

`kube.Watch` is a Kubernetes watch that survives API-server restarts and watch expiry without losing or repeating an
object version; `service` runs the watches and receivers into `pipeline`; with several processes, `leader` elects
one watcher per cluster with a Kubernetes Lease and `takeover` lets the next one continue where the last stopped.
Grouping into incidents is `engines/incidents`.
"""
