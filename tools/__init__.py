"""The tool catalogue. Importing this package declares every tool (see `tools.catalogue`)."""

from tools import clusters, overview, pods, resources, workloads  # noqa: F401
