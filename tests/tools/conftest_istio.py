"""Fixtures for the Istio and diagnosis integration tests; import them into a test module.

`mesh` installs the Istio and Gateway API CRDs (real groups and versions), an IngressClass and a fake ingress
gateway + istiod in istio-system, once per session. `kube` wraps the control plane's raw API for builders.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.tools.diagnosis_scenarios import Kube, cleanup, install_mesh


@pytest.fixture(scope="session")
def mesh(cluster) -> Kube:  # the session ClusterEnv of tests/conftest.py
    cp = cluster.require_control_plane()
    kube = Kube(cp.api, cp)
    install_mesh(kube)
    return kube


@pytest.fixture
def kube(mesh: Kube, namespace: str) -> Iterator[Kube]:
    """The mesh-ready cluster; removes what the test namespace's deletion would leave behind."""
    yield mesh
    cleanup(mesh, namespace)
