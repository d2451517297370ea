"""Operating the server: health probes, Prometheus metrics, structured logs and a graceful shutdown.

ops/metrics.py     every metric of the process, in one registry of its own (any layer may count through it)
ops/instrument.py  what the server wraps to measure: tool calls and the runtime's cache
ops/health.py      what /readyz checks: the store and the default cluster's API server
ops/logs.py        text or JSON log lines, masked, with the caller and tool when known
ops/http.py        /healthz, /readyz, /metrics and the drain on SIGTERM, added to the MCP server's HTTP app
"""
