"""Markdown runbooks shipped with CloudPilot, one or more per diagnosis finding family (see engines/runbooks.py)."""

from pathlib import Path

SHIPPED = Path(__file__).parent
