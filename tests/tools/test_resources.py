"""Any kind through discovery (CRDs included): list, get, describe, events; secrets stay on the server."""

import pytest

from errors import InvalidInput, NotFound
from tests.cluster import states
from tools import events, resources


def make_crd(cluster, group: str, kind: str, plural: str, short: list[str] | None = None) -> None:
    cp = cluster.require_control_plane()
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "shortNames": short or []},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    try:
        cp.api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body)
    except RuntimeError as e:
        if "AlreadyExists" not in str(e):
            raise

    def established() -> bool:
        crd = cp.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{group}")
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (crd.get("status") or {}).get("conditions") or []
        )

    states.wait_for(established, what=f"CRD {plural}.{group}")


async def test_crds_are_found_by_kind_plural_short_name_and_group(call, cluster, namespace):
    make_crd(cluster, "example.com", "Widget", "widgets", ["wd"])
    cluster.custom.create_namespaced_custom_object(
        "example.com",
        "v1",
        namespace,
        "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "big"}, "spec": {"size": 42}},
    )
    for kind in ("Widget", "widgets", "wd", "widgets.example.com"):
        listed = await call(resources.resources_list, kind=kind, namespace=namespace)
        assert listed.rows == [["big", 42]], kind
        assert listed.columns == ["NAME", "SIZE"]  # the CRD's own printer columns
    got = await call(resources.resource_get, kind="wd", name="big", namespace=namespace, fields=["spec.size"])
    assert "size: 42" in got.text and "managedFields" not in got.text
    kinds = await call(resources.api_resources, group="example.com")
    assert [k.name for k in kinds.kinds] == ["widgets.example.com"]


async def test_ambiguous_and_unknown_kinds_say_what_to_do(call, cluster):
    make_crd(cluster, "a.example.com", "Gizmo", "gizmos")
    make_crd(cluster, "b.example.com", "Gizmo", "gizmos")
    with pytest.raises(InvalidInput, match=r"ambiguous.*gizmos.a.example.com, gizmos.b.example.com"):
        await call(resources.resources_list, kind="Gizmo")
    listed = await call(resources.resources_list, kind="gizmos.b.example.com")
    assert listed.kind == "gizmos.b.example.com"
    with pytest.raises(NotFound, match=r"not served.*api_resources"):
        await call(resources.resources_list, kind="Frobnicator")


async def test_builtin_listing_outputs_and_paging(call, cluster, namespace):
    for i in range(5):
        cluster.core.create_namespaced_config_map(
            namespace, {"metadata": {"name": f"cm-{i}", "labels": {"i": str(i)}}, "data": {"k": str(i)}}
        )
    page = await call(resources.resources_list, kind="cm", namespace=namespace, output="names", limit=3)
    assert page.columns == ["NAME"] and len(page.rows) == 3 and page.page.continue_token
    assert page.page.total == 6  # five + kube-root-ca.crt
    rest = await call(
        resources.resources_list,
        kind="cm",
        namespace=namespace,
        output="names",
        limit=3,
        continue_token=page.page.continue_token,
    )
    assert len(rest.rows) == 3 and rest.page.continue_token is None
    picked = await call(
        resources.resources_list,
        kind="configmaps",
        namespace=namespace,
        output="json",
        label_selector="i in (1,2)",
        fields=["data.k"],
    )
    assert sorted(o["data"]["k"] for o in picked.objects) == ["1", "2"]
    assert set(picked.objects[0]) == {"metadata", "data"}


async def test_secret_values_never_leave_the_server(call, cluster, namespace):
    cluster.core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"password": "hunter2-secret"}}
    )
    for output in ("json", "yaml", "summary"):
        listed = await call(resources.resources_list, kind="secrets", namespace=namespace, output=output)
        assert "aHVudGVyMi1zZWNyZXQ=" not in listed.model_dump_json() + listed.render()
    got = await call(resources.resource_get, kind="Secret", name="db", namespace=namespace, output="json")
    assert "aHVudGVyMi1zZWNyZXQ=" not in got.text and "<redacted: 20 chars>" in got.text
    described = await call(resources.resource_describe, kind="secret", name="db", namespace=namespace)
    assert "aHVudGVyMi1zZWNyZXQ=" not in described.render()


async def test_describe_shows_object_and_its_events(call, cluster, namespace):
    cluster.apps.create_namespaced_deployment(namespace, states.deployment("web", "x:1", replicas=0))
    states.make_event(cluster.core, namespace, "Deployment", "web", "ScalingReplicaSet", "Scaled down to 0", "Normal")
    described = await call(resources.resource_describe, kind="deploy", name="web", namespace=namespace)
    assert "image: x:1" in described.text and described.events[0].reason == "ScalingReplicaSet"
    with pytest.raises(InvalidInput, match="namespaced: pass `namespace`"):
        await call(resources.resource_get, kind="deploy", name="web")


async def test_events_newest_first_and_warnings_only(call, cluster, namespace):
    states.make_event(cluster.core, namespace, "Pod", "a", "Pulled", "pulled", "Normal", when="2026-01-01T00:00:00Z")
    states.make_event(cluster.core, namespace, "Pod", "a", "BackOff", "older", when="2026-01-01T00:01:00Z")
    states.make_event(
        cluster.core, namespace, "Pod", "b", "FailedMount", "newest token=abc123", when="2026-01-01T00:02:00Z"
    )
    all_events = await call(events.events_list, namespace=namespace)
    assert [e.reason for e in all_events.events] == ["FailedMount", "BackOff", "Pulled"]
    assert "abc123" not in all_events.events[0].message
    warnings = await call(events.events_list, namespace=namespace, warnings_only=True, name="a")
    assert [e.reason for e in warnings.events] == ["BackOff"]


async def test_events_are_paged(call, cluster, namespace):
    for i in range(5):
        states.make_event(cluster.core, namespace, "Pod", f"p{i}", "BackOff", f"m{i}", when=f"2026-01-01T00:0{i}:00Z")
    first = await call(events.events_list, namespace=namespace, limit=2)
    assert [e.object for e in first.events] == ["Pod/p4", "Pod/p3"] and first.page.total == 5
    second = await call(events.events_list, namespace=namespace, limit=2, continue_token=first.page.continue_token)
    assert [e.object for e in second.events] == ["Pod/p2", "Pod/p1"]
