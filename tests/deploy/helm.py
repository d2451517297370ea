"""The chart in deploy/helm/cloudpilot, rendered by a real helm (v4, built from the Go module proxy by
scripts/build-helm.sh) and applied with the real kubectl the control plane was built with."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.controlplane import ensure_binaries

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "cloudpilot"
EXAMPLES = REPO / "deploy" / "helm" / "examples"
Manifest = dict[str, Any]


def helm_binary() -> Path:
    """helm: $CLOUDPILOT_HELM_BIN/helm, or built (and cached) now."""
    folder = os.environ.get("CLOUDPILOT_HELM_BIN")
    if not folder:
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "build-helm.sh")], check=True, stdout=subprocess.PIPE, text=True
        ).stdout
        folder = out.strip().splitlines()[-1]
    return Path(folder) / "helm"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm with its caches and config in a throwaway folder (never the user's), whatever it answers."""
    with tempfile.TemporaryDirectory(prefix="cloudpilot-helm-") as home:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": home,
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_DATA_HOME": f"{home}/data",
        }
        return subprocess.run([str(helm_binary()), *args], env=env, capture_output=True, text=True, timeout=120)


def options(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    """helm's --values and --set arguments."""
    return [*(a for v in values for a in ("--values", str(v))), *(a for s in sets for a in ("--set", s))]


def render(release: str, namespace: str, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[Manifest]:
    """The objects `helm template` renders, in order; raises RenderError with helm's message when it refuses."""
    done = helm("template", release, str(CHART), "--namespace", namespace, *options(values, sets))
    if done.returncode != 0:
        raise RenderError(done.stderr.strip())
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


class RenderError(Exception):
    """helm template refused the values (a `fail` in the chart, or a template error)."""


def find(objects: list[Manifest], kind: str, suffix: str = "") -> Manifest:
    """The one object of `kind` whose name ends with `suffix`."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{len(found)} {kind} objects named *{suffix}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def settings_file(objects: list[Manifest]) -> str:
    """The settings file the ConfigMap mounts at /etc/cloudpilot/settings.yaml."""
    return str(find(objects, "ConfigMap")["data"]["settings.yaml"])


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The control plane's own kubectl (tests/cluster/controlplane.ensure_binaries)."""
    return subprocess.run(
        [str(ensure_binaries() / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def as_yaml(objects: list[Manifest]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)
