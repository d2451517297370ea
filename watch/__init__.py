"""The event pipeline (issue 13, in progress): watching clusters and receiving alerts, at the edge of the layers —
it may use the agent team only through `agents.api`, like the bots.

Today: `kube.Watch`, a Kubernetes watch that survives API-server restarts and watch expiry without losing or
repeating an object version. Grouping into incidents is `engines/incidents`.
"""
