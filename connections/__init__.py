"""Connections to what CloudPilot observes: Kubernetes API servers and Prometheus."""
