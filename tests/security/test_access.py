"""The per-identity access policy (guard/access.py) over authenticated HTTP: which toolsets a caller sees and
whether write tools are visible, by OIDC principal, OIDC group or store token; and the caller's identity in the
audit row of the change it plans. Served and authenticated for real, as in test_oidc.py."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as kclient
from pydantic import ValidationError

from guard import access
from runtime import Principal
from settings import ServerSettings, Settings
from store import AuditLog, Store
from tests.security.test_http_auth import add_token, make_settings, serving, session
from tests.security.test_oidc import Issuer

RULES = [
    {"match": ["group:sre"], "toolsets": ["*"], "writes": True},
    {"match": ["oidc:*@example.com", "token:ci-*"], "toolsets": ["core", "diagnose"], "writes": False},
]
NOBODY = {"match": ["*"], "toolsets": [], "writes": False}


def policy_settings(tmp_path: Any, issuer: Issuer) -> Settings:
    return make_settings(
        tmp_path, oidc_issuer=issuer.url, oidc_principal_claim="email", access_rules=RULES, access_default=NOBODY
    )


def _text(answer: Any) -> str:
    return str(getattr(answer.content[0], "text", ""))


async def test_a_group_rule_gives_every_toolset_and_writes(tmp_path, issuer):
    settings = policy_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        token = issuer.token(srv.url, scope="cloudpilot:write", groups=["dev", "sre"], email="carol@example.com")
        async with session(srv.url, token) as client:
            names = {t.name for t in (await client.list_tools()).tools}
    specs = {s.name: s for s in srv.mcp.pipeline.specs}
    assert {"scale", "fix_apply", "rca_namespace", "pods_list"} <= names  # the first matching rule wins
    assert names == {n for n, s in specs.items() if s.access in ("read", "write")}


async def test_a_principal_rule_narrows_toolsets_and_hides_writes_whatever_the_token_says(tmp_path, issuer):
    settings = policy_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        token = issuer.token(srv.url, scope="cloudpilot:write", email="bob@example.com")
        async with session(srv.url, token) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            hidden_toolset = await client.call_tool("rca_namespace", {"namespace": "a"})
            hidden_write = await client.call_tool(
                "scale", {"kind": "Deployment", "name": "w", "namespace": "a", "replicas": 2}
            )
    specs = {s.name: s for s in srv.mcp.pipeline.specs}
    assert names and {specs[n].toolset for n in names} == {"core", "diagnose"}
    assert all(specs[n].access == "read" for n in names)
    assert hidden_toolset.isError and "toolset 'rca'" in _text(hidden_toolset)
    assert "server.access_rules" in _text(hidden_toolset) and "bob@example.com (oidc)" in _text(hidden_toolset)
    assert hidden_write.isError and "scale needs 'write' access" in _text(hidden_write)
    assert [c[0] for c in srv.calls] == ["rca_namespace", "scale"]  # refused in the pipeline, before any tool ran


async def test_a_caller_no_rule_names_gets_the_default(tmp_path, issuer):
    settings = policy_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        token = issuer.token(srv.url, scope="cloudpilot:destructive", email="mallory@elsewhere.test")
        async with session(srv.url, token) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            refused = await client.call_tool("pods_list", {})
    assert names == set()
    assert refused.isError and "does not give mallory@elsewhere.test (oidc)" in _text(refused)


async def test_store_tokens_are_matched_by_name(tmp_path, issuer):
    settings = policy_settings(tmp_path, issuer)
    ci = add_token(settings, "ci-nightly", "write")
    other = add_token(settings, "ops", "write")
    async with serving(settings) as srv:
        async with session(srv.url, ci) as client:
            ci_names = {t.name for t in (await client.list_tools()).tools}
        async with session(srv.url, other) as client:
            other_names = {t.name for t in (await client.list_tools()).tools}
    specs = {s.name: s for s in srv.mcp.pipeline.specs}
    assert ci_names and {specs[n].toolset for n in ci_names} == {"core", "diagnose"} and "scale" not in ci_names
    assert other_names == set()


async def test_a_group_claim_that_is_not_a_list_of_names_matches_nothing_it_should_not(tmp_path, issuer):
    settings = policy_settings(tmp_path, issuer)
    async with serving(settings) as srv:
        for groups in ({"sre": True}, ["s" * 500], [["sre"]], "sre\n"):
            token = issuer.token(srv.url, scope="cloudpilot:write", groups=groups, email="eve@elsewhere.test")
            async with session(srv.url, token) as client:
                assert (await client.list_tools()).tools == [], groups
        token = issuer.token(srv.url, scope="cloudpilot:write", groups="sre", email="eve@elsewhere.test")
        async with session(srv.url, token) as client:  # one name alone is a group too
            assert "scale" in {t.name for t in (await client.list_tools()).tools}


def test_without_rules_nothing_is_narrowed_and_rules_are_validated():
    alice = Principal("alice (token)", frozenset({"read", "write"}), "http")
    assert access.apply(ServerSettings(), alice, ["token:alice"]) is alice
    narrowed = access.apply(ServerSettings(access_rules=RULES), alice, ["token:ci-1"])
    assert narrowed.scopes == {"read"} and narrowed.toolsets == {"core", "diagnose"}
    assert access.apply(ServerSettings(access_rules=RULES), alice, ["token:alice"]).toolsets is not None
    with pytest.raises(ValidationError, match="unknown toolsets"):
        ServerSettings(access_rules=[{"match": ["*"], "toolsets": ["kubectl"]}])
    with pytest.raises(ValidationError):
        ServerSettings(access_rules=[{"match": []}])


@pytest.mark.cluster
async def test_the_audit_row_names_the_oidc_caller_and_client(tmp_path, issuer, cluster, namespace):
    cluster.apps.create_namespaced_deployment(
        namespace,
        kclient.V1Deployment(
            metadata=kclient.V1ObjectMeta(name="web"),
            spec=kclient.V1DeploymentSpec(
                replicas=1,
                selector=kclient.V1LabelSelector(match_labels={"app": "web"}),
                template=kclient.V1PodTemplateSpec(
                    metadata=kclient.V1ObjectMeta(labels={"app": "web"}),
                    spec=kclient.V1PodSpec(containers=[kclient.V1Container(name="web", image="nginx:1.27")]),
                ),
            ),
        ),
    )
    settings = policy_settings(tmp_path, issuer).model_copy(
        update={"k8s": Settings(k8s={"kubeconfig": cluster.kubeconfig, "context": None}).k8s}
    )
    async with serving(settings) as srv:
        token = issuer.token(srv.url, scope="cloudpilot:write", groups=["sre"], email="carol@example.com")
        async with session(srv.url, token) as client:
            planned = await client.call_tool(
                "scale", {"kind": "Deployment", "name": "web", "namespace": namespace, "replicas": 3}
            )
    assert not planned.isError, _text(planned)
    store = Store(settings.store.path)
    try:
        rows = [e for e in AuditLog(store).entries(limit=10) if e.event == "planned"]
    finally:
        store.close()
    assert len(rows) == 1 and rows[0].principal == "carol@example.com (oidc)"
    assert rows[0].client.startswith("mcp:") and namespace in rows[0].object
