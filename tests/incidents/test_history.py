"""What changed before it broke, without a cluster: which versions are edits, what their summaries say (and never
say), how edits rank against an incident's root by time and by the object graph, and the bounds on memory."""

from __future__ import annotations

import base64
import copy
from typing import Any

from engines.incidents.history import MAX_LIMIT, MAX_SUMMARY, Edit, History

LEAK = "hunter2-DO-NOT-LEAK"


def deployment(
    name: str = "web",
    ns: str = "shop",
    image: str = "shop/web:1.0",
    replicas: int = 2,
    configmap: str = "",
    secret: str = "",
    env: str = "1",
    revision: str = "1",
) -> dict[str, Any]:
    volumes = [{"name": "conf", "configMap": {"name": configmap}}] if configmap else []
    envs: list[dict[str, Any]] = [{"name": "MODE", "value": env}]
    if secret:
        envs.append({"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": "100",
            "generation": 1,
            "annotations": {"deployment.kubernetes.io/revision": revision},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": image, "env": envs}],
                    "volumes": volumes,
                    "serviceAccountName": name,
                },
            },
        },
        "status": {"replicas": replicas, "readyReplicas": replicas},
    }


def configmap(name: str, ns: str = "shop", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def istio(kind: str, name: str, ns: str, spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    group = "security.istio.io" if kind in ("AuthorizationPolicy", "PeerAuthentication") else "networking.istio.io"
    meta = {"name": name, "namespace": ns, "generation": generation}
    return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": meta, "spec": spec}


def changed(h: History, kind: str, before: dict[str, Any], after: dict[str, Any], at: float, cluster: str = "c1"):
    """Seen once (first sight: no edit), then changed: the edit."""
    assert h.observe(cluster, kind, before, at - 1000, "ADDED") is None
    return h.observe(cluster, kind, after, at)


def by_object(ranked) -> dict[str, int]:
    return {r.edit.object: r.distance for r in ranked}


def test_first_sight_is_not_an_edit_and_a_new_image_is_a_rollout_naming_both():
    h = History()
    assert h.observe("c1", "Deployment", deployment(), 100.0, "ADDED") is None
    assert h.observe("c1", "Deployment", deployment(), 110.0, "ADDED") is None  # the same content, listed again
    edit = h.observe("c1", "Deployment", deployment(image="shop/web:2.0-typo", revision="7"), 200.0)
    assert isinstance(edit, Edit)
    assert (edit.cluster, edit.object, edit.kind, edit.at) == ("c1", "Deployment shop/web", "rollout", 200.0)
    assert edit.revision == "7"
    assert "container app image shop/web:1.0 → shop/web:2.0-typo" in edit.summary
    assert edit.summary.startswith("rollout of Deployment shop/web:")
    # a first sight of another object (a MODIFIED with nothing known before) is not an edit either
    assert h.observe("c1", "Deployment", deployment(name="api", image="x:2"), 300.0) is None


def test_status_and_metadata_only_changes_are_not_edits():
    h = History()
    d = deployment()
    h.observe("c1", "Deployment", d, 0.0, "ADDED")
    noisy = copy.deepcopy(d)
    noisy["metadata"].update(resourceVersion="999", generation=9, labels={"team": "x"}, managedFields=[{"m": 1}])
    noisy["status"] = {"replicas": 1, "conditions": [{"type": "Available", "status": "False"}]}
    assert h.observe("c1", "Deployment", noisy, 10.0) is None
    cm = configmap("conf", a="1")
    h.observe("c1", "ConfigMap", cm, 0.0, "ADDED")
    relabelled = copy.deepcopy(cm)
    relabelled["metadata"].update(labels={"x": "y"}, annotations={"note": "z"}, resourceVersion="2")
    assert h.observe("c1", "ConfigMap", relabelled, 10.0) is None
    vs = istio("VirtualService", "web", "shop", {"hosts": ["web"]})
    h.observe("c1", "VirtualService", vs, 0.0, "ADDED")
    annotated = copy.deepcopy(vs)
    annotated["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert h.observe("c1", "VirtualService", annotated, 10.0) is None
    assert h.edits == {}
    # and the same ConfigMap with new data is one
    assert h.observe("c1", "ConfigMap", configmap("conf", a="2"), 20.0) is not None


def test_a_replicas_only_change_is_a_scale():
    h = History()
    edit = changed(h, "Deployment", deployment(replicas=2), deployment(replicas=5), 50.0)
    assert edit is not None and edit.kind == "scale"
    assert edit.summary == "Deployment shop/web scaled 2 → 5"


def test_a_rollout_names_which_template_parts_changed_and_stays_short():
    h = History()
    before, after = deployment(), deployment(env="2")
    after["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "now"}
    edit = changed(h, "Deployment", before, after, 50.0)
    assert edit is not None and edit.kind == "rollout"
    assert "env of app" in edit.summary and "template annotations" in edit.summary
    assert "image" not in edit.summary  # the image did not change
    huge = deployment(image="registry.example/" + "x" * 5000)
    edit = h.observe("c1", "Deployment", huge, 60.0)
    assert edit is not None and len(edit.summary) <= MAX_SUMMARY


def test_a_configmap_the_root_mounts_is_linked_and_one_it_does_not_is_only_its_namespace():
    h = History()
    h.observe("c1", "Deployment", deployment(configmap="web-conf"), 0.0, "ADDED")
    mounted = changed(h, "ConfigMap", configmap("web-conf", a="1", b="1"), configmap("web-conf", a="2", b="1"), 900.0)
    assert mounted is not None and mounted.kind == "config"
    assert "keys a;" in mounted.summary and "b" not in mounted.summary.split("(")[1].split(";")[0]
    changed(h, "ConfigMap", configmap("other-conf", a="1"), configmap("other-conf", a="2"), 950.0)
    ranked = h.preceding("c1", "Deployment shop/web", 1000.0)
    assert by_object(ranked) == {"ConfigMap shop/web-conf": 1, "ConfigMap shop/other-conf": 2}
    assert ranked[0].edit.object == "ConfigMap shop/web-conf"  # 100 s further back, but linked
    assert ranked[0].seconds_before == 100.0 and 0 < ranked[0].score < 1


def test_a_secret_change_never_shows_a_value_or_a_key_name():
    h = History()
    h.observe("c1", "Deployment", deployment(secret="db"), 0.0, "ADDED")
    encoded = base64.b64encode(LEAK.encode()).decode()

    def secret(value: str, plain: str) -> dict[str, Any]:
        meta = {"name": "db", "namespace": "shop"}
        return {"kind": "Secret", "metadata": meta, "data": {"db-password": value}, "stringData": {"token": plain}}

    edit = changed(h, "Secret", secret("b2xk", "old"), secret(encoded, LEAK), 100.0)
    assert edit is not None and edit.kind == "secret"
    assert edit.summary.startswith("Secret shop/db changed (2 keys; content ")
    held = repr(h.objects) + repr(h.edits)  # what History keeps: hashes, not even key names
    assert LEAK not in held and encoded not in held and "db-password" not in held
    deleted = h.observe("c1", "Secret", secret(encoded, LEAK), 200.0, "DELETED")
    assert deleted is not None and deleted.summary == "Secret shop/db deleted"
    for e in (edit, deleted):
        for text in (repr(e), *(str(v) for v in vars(e).values())):
            for secret_bit in (LEAK, encoded, "db-password", "token"):
                assert secret_bit not in text
    assert by_object(h.preceding("c1", "Deployment shop/web", 200.0)) == {"Secret shop/db": 1}


def test_istio_routing_to_the_roots_service_is_linked_wherever_it_lives():
    h = History()
    h.observe("c1", "Deployment", deployment(), 0.0, "ADDED")
    route = {"http": [{"route": [{"destination": {"host": "web.shop.svc.cluster.local", "subset": "v2"}}]}]}
    vs_before = istio("VirtualService", "storefront", "frontend", {"hosts": ["shop.example.com"]}, generation=3)
    vs_after = istio("VirtualService", "storefront", "frontend", {"hosts": ["shop.example.com"], **route}, 4)
    edit = changed(h, "VirtualService", vs_before, vs_after, 500.0)
    assert edit is not None and edit.kind == "istio"
    assert edit.summary == "VirtualService frontend/storefront edited (generation 3 → 4)"
    other = istio("VirtualService", "api", "shop", {"hosts": ["api"]})
    changed(h, "VirtualService", other, istio("VirtualService", "api", "shop", {"hosts": ["api"], "tcp": []}), 500.0)
    rule = istio("DestinationRule", "web-dr", "shop", {"host": "web.shop"})
    h.observe("c1", "DestinationRule", rule, 0.0, "ADDED")
    assert h.observe("c1", "DestinationRule", rule, 600.0, "DELETED") is not None
    named = istio("DestinationRule", "web", "shop", {"host": "web-canary"})  # named after the root: linked too
    changed(h, "DestinationRule", named, istio("DestinationRule", "web", "shop", {"host": "web-canary", "x": 1}), 600.0)
    assert by_object(h.preceding("c1", "Deployment shop/web", 700.0)) == {
        "VirtualService frontend/storefront": 1,
        "DestinationRule shop/web-dr": 1,
        "DestinationRule shop/web": 1,
        "VirtualService shop/api": 2,
    }


def test_policies_link_by_selector_and_a_mesh_wide_one_counts_as_the_namespace():
    h = History()
    h.observe("c1", "Deployment", deployment(), 0.0, "ADDED")
    for name, ns, spec in (
        ("allow-web", "shop", {"selector": {"matchLabels": {"app": "web"}}}),
        ("allow-api", "shop", {"selector": {"matchLabels": {"app": "api"}}}),
        ("shop-wide", "shop", {"action": "DENY"}),
        ("mesh-wide", "istio-system", {}),
        ("elsewhere", "billing", {}),
    ):
        kind = "PeerAuthentication" if ns != "shop" else "AuthorizationPolicy"
        changed(h, kind, istio(kind, name, ns, spec), istio(kind, name, ns, {**spec, "rules": [{}]}), 100.0)
    assert by_object(h.preceding("c1", "Deployment shop/web", 100.0, limit=10)) == {
        "AuthorizationPolicy shop/allow-web": 1,
        "AuthorizationPolicy shop/allow-api": 2,
        "AuthorizationPolicy shop/shop-wide": 1,
        "PeerAuthentication istio-system/mesh-wide": 2,
        "PeerAuthentication billing/elsewhere": 3,
    }


def test_a_service_root_stands_for_its_workload_and_a_pod_root_for_its_namespace():
    h = History()
    changed(h, "Deployment", deployment(configmap="web-conf"), deployment(image="b", configmap="web-conf"), 100.0)
    changed(h, "ConfigMap", configmap("web-conf", a="1"), configmap("web-conf", a="2"), 100.0)
    changed(h, "ConfigMap", configmap("far", ns="other", a="1"), configmap("far", ns="other", a="2"), 100.0)
    assert by_object(h.preceding("c1", "Service shop/web", 100.0)) == {
        "Deployment shop/web": 0,
        "ConfigMap shop/web-conf": 1,
        "ConfigMap other/far": 3,
    }
    assert by_object(h.preceding("c1", "Pod shop/web-abc", 100.0)) == {
        "Deployment shop/web": 2,
        "ConfigMap shop/web-conf": 2,
        "ConfigMap other/far": 3,
    }
    assert set(by_object(h.preceding("c1", "Node node-1", 100.0)).values()) == {3}


def test_the_roots_own_rollout_outranks_a_more_recent_change_elsewhere():
    h = History()
    at = 10_000.0
    changed(h, "Deployment", deployment(), deployment(image="shop/web:2.0"), at - 120)
    changed(h, "ConfigMap", configmap("x", ns="billing", a="1"), configmap("x", ns="billing", a="2"), at - 10)
    first, second = h.preceding("c1", "Deployment shop/web", at)
    assert (first.edit.object, first.distance, first.seconds_before) == ("Deployment shop/web", 0, 120.0)
    assert (second.edit.object, second.distance) == ("ConfigMap billing/x", 3)
    assert first.score > second.score
    assert len(h.preceding("c1", "Deployment shop/web", at, limit=1)) == 1


def test_the_window_keeps_old_edits_out_and_lets_a_minute_of_skew_in():
    h = History()
    changed(h, "ConfigMap", configmap("old", a="1"), configmap("old", a="2"), 1000.0)
    changed(h, "ConfigMap", configmap("late", a="1"), configmap("late", a="2"), 5050.0)
    changed(h, "ConfigMap", configmap("too-late", a="1"), configmap("too-late", a="2"), 5100.0)
    changed(h, "ConfigMap", configmap("recent", a="1"), configmap("recent", a="2"), 4000.0)
    ranked = h.preceding("c1", "Deployment shop/web", 5000.0, window=1800)
    assert sorted(by_object(ranked)) == ["ConfigMap shop/late", "ConfigMap shop/recent"]
    late = next(r for r in ranked if r.edit.object == "ConfigMap shop/late")
    assert late.seconds_before == -50.0
    assert len(h.preceding("c1", "Deployment shop/web", 5000.0, window=5000)) == 3


def test_edits_of_other_clusters_never_appear():
    h = History()
    changed(h, "Deployment", deployment(), deployment(image="b"), 100.0, cluster="c2")
    changed(h, "ConfigMap", configmap("conf", a="1"), configmap("conf", a="2"), 100.0, cluster="c2")
    assert h.preceding("c1", "Deployment shop/web", 100.0) == []
    assert len(h.preceding("c2", "Deployment shop/web", 100.0)) == 2


def test_deleting_config_is_an_edit_and_deleting_a_workload_forgets_it():
    h = History()
    h.observe("c1", "ConfigMap", configmap("conf", a="1"), 0.0, "ADDED")
    edit = h.observe("c1", "ConfigMap", configmap("conf", a="1"), 10.0, "DELETED")
    assert edit is not None and (edit.kind, edit.summary) == ("config", "ConfigMap shop/conf deleted")
    h.observe("c1", "Deployment", deployment(), 0.0, "ADDED")
    assert h.observe("c1", "Deployment", deployment(), 10.0, "DELETED") is None
    assert ("c1", "Deployment shop/web") not in h.objects and ("c1", "ConfigMap shop/conf") not in h.objects
    assert h.observe("c1", "Deployment", deployment(image="new"), 20.0, "ADDED") is None  # a new first sight


def test_hostile_input_never_raises():
    h = History()
    big = "x" * 1_000_000
    odd: list[Any] = [
        None,
        [],
        "Deployment",
        {},
        {"metadata": None},
        {"metadata": []},
        {"metadata": {"name": ["web"]}},
        {"metadata": {"name": big}},
        {"metadata": {"name": "web", "namespace": 7}, "spec": []},
        {"metadata": {"name": "web", "namespace": "shop"}, "spec": {"template": []}},
        {"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": {"a": 1}, "volumes": "v"}}}},
        {"metadata": {"name": "web"}, "spec": {"replicas": "many", "template": {"spec": {"containers": [None, 3]}}}},
        {"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [{"name": big, "image": big}]}}}},
        {
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"env": [None, {"valueFrom": 1}]}]}}},
        },
        {"metadata": {"name": "web"}, "spec": {1: "a", "b": 2}, "data": {1: 2, "k": None}},
        {"metadata": {"name": "web"}, "spec": {"hosts": [None, big, "*.shop", "a.b.c.d"], "http": [{"route": None}]}},
        {"metadata": {"name": "web"}, "data": big, "stringData": [big], "spec": {"selector": "all"}},
    ]
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100_000):
        node["a"] = {}
        node = node["a"]
    odd.append({"metadata": {"name": "web"}, "spec": {"template": deep}, "data": deep})
    for kind in ("Deployment", "StatefulSet", "ConfigMap", "Secret", "VirtualService", "Sidecar", "Gateway", "Pod"):
        for at, obj in enumerate(odd):
            for event in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", None):
                edit = h.observe("c1", kind, obj, float(at), event)  # type: ignore[arg-type]
                assert edit is None or len(edit.summary) <= MAX_SUMMARY
    bads: list[Any] = [None, [], {}, b"c1"]
    for bad in bads:
        assert h.observe(bad, "Deployment", deployment(), 0.0) is None
        assert h.observe("c1", bad, deployment(), 0.0) is None
        assert h.observe("c1", "Deployment", deployment(), bad) is None
        assert h.preceding(bad, "Deployment shop/web", 0.0) == []
        assert h.preceding("c1", bad, 0.0) == []
        h.forget(bad)
    assert h.observe("c1", "Deployment", deployment(), float("nan")) is None
    for root in ("", "Deployment", "Deployment /", "Service shop/", big, "Pod a/b/c"):
        h.preceding("c1", root, 5.0, window=float("inf"), limit="lots")  # type: ignore[arg-type]


def test_memory_is_bounded_by_max_edits_and_forget():
    h = History(keep_seconds=100.0, max_edits=3)
    h.observe("c1", "ConfigMap", configmap("conf", a="0"), 0.0, "ADDED")
    for i in range(1, 8):
        assert h.observe("c1", "ConfigMap", configmap("conf", a=str(i)), float(i)) is not None
    assert len(h.edits["c1"]) == 3
    assert [r.edit.at for r in h.preceding("c1", "ConfigMap shop/conf", 10.0, limit=50)] == [7.0, 6.0, 5.0]
    h.observe("c1", "ConfigMap", configmap("conf", a="late"), 150.0)
    h.forget(200.0)  # keeps edits from 100 s on
    assert [e.edit.at for e in h.edits["c1"]] == [150.0]
    h.forget(1000.0)
    assert h.edits == {}
    state = h.objects[("c1", "ConfigMap shop/conf")]
    assert "late" not in repr(state)  # hashes, never the data


def test_at_most_twenty_are_returned():
    h = History()
    for i in range(30):
        changed(h, "ConfigMap", configmap(f"c{i}", a="1"), configmap(f"c{i}", a="2"), 100.0 + i)
    ranked = h.preceding("c1", "Deployment shop/web", 200.0, limit=100)
    assert len(ranked) == MAX_LIMIT
    assert [r.edit.at for r in ranked] == sorted((r.edit.at for r in ranked), reverse=True)  # closer first
