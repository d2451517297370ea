"""Root-cause analysis from metric series: detectors, onset detection, call-graph reasoning, chains.

Pure: numpy and scikit-learn only; nothing here knows about MCP, Kubernetes or Prometheus.
"""

from engines.rca.analysis import Candidate, Event, MetricEvidence, Report, analyse
from engines.rca.frame import Frame, FrameError, from_csv, service_of

__all__ = ["Candidate", "Event", "Frame", "FrameError", "MetricEvidence", "Report", "analyse", "from_csv", "service_of"]
