"""Kubernetes semantics with no I/O: resource quantities, pod status reasons, API timestamps.

Shared by the tools (which talk to clusters) and the engines (which reason over plain objects).
"""
