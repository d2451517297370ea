"""The RBAC rule a refused request needs, read from its path (what a 403 message tells an operator to grant)."""

from __future__ import annotations

import pytest

from connections.kube import rbac_target


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/apis/apps/v1/namespaces/shop/deployments/web", ("apps", "deployments", "shop")),
        ("/apis/apps/v1/namespaces/shop/deployments/web/scale?dryRun=All", ("apps", "deployments/scale", "shop")),
        ("/api/v1/namespaces/shop/pods/web-1/log", ("", "pods/log", "shop")),
        ("/api/v1/pods", ("", "pods", None)),
        ("/api/v1/nodes/node-1", ("", "nodes", None)),
        ("/api/v1/namespaces/shop", ("", "namespaces", None)),
        ("/api/v1/namespaces", ("", "namespaces", None)),
        (
            "/apis/networking.istio.io/v1/namespaces/shop/virtualservices",
            ("networking.istio.io", "virtualservices", "shop"),
        ),
        ("/apis/metrics.k8s.io/v1beta1/nodes", ("metrics.k8s.io", "nodes", None)),
        ("/version", ("", "", None)),
        ("/apis", ("", "", None)),
    ],
)
def test_the_rule_a_request_needs(path: str, target: tuple[str, str, str | None]) -> None:
    assert rbac_target(path) == target
