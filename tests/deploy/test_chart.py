"""The Helm chart and the image recipe: `helm lint` and `helm template` pass for the default, read-only, write-enabled
and everything-on values; the rendered objects are hardened, reference Secrets instead of holding them, grant reads
on what the code reads (never Secret data) and writes only when asked; the real API server accepts them with a
server-side dry run; the Containerfile copies exactly the Python package."""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as kclient

from engines.remediation.edits import SCALABLE_KINDS, TEMPLATE_KINDS
from settings import load_settings
from tests.deploy.helm import (
    CHART,
    EXAMPLES,
    REPO,
    Manifest,
    RenderError,
    as_yaml,
    find,
    helm,
    kubectl,
    options,
    render,
    settings_file,
)
from tools.diagnose import BUILTIN, MESH_KINDS
from watch.service import SOURCES

pytestmark = pytest.mark.timeout(180)

EVERYTHING = [
    "autoscaling.enabled=true",
    "rbac.write.enabled=true",
    "rbac.destructive.enabled=true",
    "rbac.read.secrets=true",
    "secrets.store.existingSecret=cp-store",
    "secrets.llm.existingSecret=cp-llm",
    "secrets.slack.existingSecret=cp-slack",
    "secrets.feishu.existingSecret=cp-feishu",
    "secrets.oidc.existingSecret=cp-oidc",
    "extraSecretEnv[0].name=CLOUDPILOT_WATCH__TOKEN",
    "extraSecretEnv[0].secretName=cp-watch",
    "extraSecretEnv[0].key=token",
    "podDisruptionBudget.minAvailable=1",
    "networkPolicy.egress.cidrs={10.0.0.0/8}",
    "server.publicHost=cloudpilot.example.com",
]
CASES = {
    "default": ([], []),
    "readonly": ([EXAMPLES / "values-readonly.yaml"], []),
    "write": ([EXAMPLES / "values-write.yaml"], []),
    "everything": ([], EVERYTHING),
}
WRITES = {"default": False, "readonly": False, "write": True, "everything": True}
SECRET_VERBS = {"get", "*"}  # what would hand over a Secret's data by name; list/watch are opt-in (rbac.read.secrets)
KIND_RESOURCES = {  # the change tools' kinds (engines/remediation/edits.py) as RBAC names them
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "ReplicaSet": ("apps", "replicasets"),
    "Job": ("batch", "jobs"),
}


def rendered(case: str, namespace: str = "cloudpilot", extra: list[str] | None = None) -> list[Manifest]:
    values, sets = CASES[case]
    return render("cp", namespace, values, [*sets, *(extra or [])])


def grants(role: Manifest, group: str, resource: str) -> set[str]:
    """The verbs a (Cluster)Role grants on one resource."""
    verbs: set[str] = set()
    for rule in role.get("rules") or []:
        if {group, "*"} & set(rule.get("apiGroups") or []) and {resource, "*"} & set(rule.get("resources") or []):
            verbs |= set(rule.get("verbs") or [])
    return verbs


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_passes(case: str) -> None:
    values, sets = CASES[case]
    done = helm("lint", "--strict", str(CHART), *options(values, sets))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("case", CASES)
def test_the_deployment_is_hardened_and_takes_secrets_by_reference(case: str, tmp_path: Path) -> None:
    objects = rendered(case)
    assert "Secret" not in {o["kind"] for o in objects}  # credentials are referenced, never rendered
    pod = find(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["args"] == ["--config", "/etc/cloudpilot/settings.yaml"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]] and "emptyDir" in volumes[mounts["/var/lib/cloudpilot"]]
    assert volumes[mounts["/etc/cloudpilot"]]["configMap"]["name"] == find(objects, "ConfigMap")["metadata"]["name"]
    for env in container["env"]:  # a credential never sits in the pod spec as a value
        if re.search(r"KEY|TOKEN|SECRET|STORE__URL|OIDC", env["name"]):
            assert "value" not in env and "secretKeyRef" in env["valueFrom"], env

    config = tmp_path / "settings.yaml"
    config.write_text(settings_file(objects))
    settings = load_settings(config)  # the file the pods get is one CloudPilot accepts
    assert settings.safety.allow_write is WRITES[case]
    assert settings.safety.allow_destructive is (case == "everything")
    assert settings.store.path == Path("/var/lib/cloudpilot/cloudpilot.db")
    assert settings.watch.lease_namespace == "cloudpilot"  # where the chart's leases Role is
    assert settings.watch.leader_election is (case in ("write", "everything"))  # several replicas
    assert settings.server.stateless_http is (case in ("write", "everything"))  # no session to find behind a Service
    grace = pod["terminationGracePeriodSeconds"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert grace > pre_stop + settings.server.shutdown_grace_seconds
    service = find(objects, "Service")
    fqdn = f"{service['metadata']['name']}.cloudpilot.svc.cluster.local"
    assert f"{fqdn}:{service['spec']['ports'][0]['port']}" in settings.server.allowed_hosts


@pytest.mark.parametrize("case", CASES)
def test_rbac_reads_what_the_code_reads_and_never_secret_data(case: str, tmp_path: Path) -> None:
    objects = rendered(case)
    read = find(objects, "ClusterRole", "-read")
    wanted = {(s.group, s.resource) for s in BUILTIN} | {(s.group, s.resource) for s in SOURCES}
    wanted |= {(full.split(".", 1)[1], full.split(".", 1)[0]) for _, full, _ in MESH_KINDS}
    wanted |= {
        ("", "pods/log"),
        ("apps", "controllerrevisions"),
        ("metrics.k8s.io", "pods"),
        ("metrics.k8s.io", "nodes"),
    }
    for group, resource in sorted(wanted - {("", "secrets")}):
        assert {"get", "list"} <= grants(read, group, resource), f"read role lacks {resource}.{group}"
    for source in SOURCES:  # the event watch streams these
        if source.resource != "secrets":
            assert "watch" in grants(read, source.group, source.resource), source

    secrets = case == "everything"  # rbac.read.secrets=true
    for role in (o for o in objects if o["kind"] in ("ClusterRole", "Role")):
        assert not SECRET_VERBS & grants(role, "", "secrets"), role["metadata"]["name"]
    assert grants(read, "", "secrets") == ({"list", "watch"} if secrets else set())
    config = tmp_path / "settings.yaml"
    config.write_text(settings_file(objects))
    assert ("secrets" in load_settings(config).watch.sources) is secrets  # the watch asks only for what it may


@pytest.mark.parametrize("case", CASES)
def test_writes_only_with_the_write_role(case: str) -> None:
    objects = rendered(case)
    roles = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-write")]
    read = find(objects, "ClusterRole", "-read")
    assert all(v in {"get", "list", "watch"} for r in read["rules"] for v in r["verbs"])
    if not WRITES[case]:
        assert not roles and not [o for o in objects if o["metadata"]["name"].endswith("-write")]
        return
    (write,) = roles
    for kind in {*TEMPLATE_KINDS, *SCALABLE_KINDS} & set(KIND_RESOURCES):
        assert {"update", "patch"} <= grants(write, *KIND_RESOURCES[kind]), kind
    assert {"update", "patch"} <= grants(write, "", "services") and "update" in grants(write, "", "nodes")
    destructive = case == "everything"
    assert ("delete" in grants(write, "apps", "deployments")) is destructive
    assert ("delete" in grants(write, "", "pods")) is destructive
    bindings = [
        o
        for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding") and o["roleRef"]["name"] == write["metadata"]["name"]
    ]
    if case == "write":  # rbac.write.namespaces: RoleBindings in those namespaces only
        assert {(b["kind"], b["metadata"]["namespace"]) for b in bindings} == {
            ("RoleBinding", "shop"),
            ("RoleBinding", "payments"),
        }
    else:
        assert [b["kind"] for b in bindings] == ["ClusterRoleBinding"]


def test_optional_objects_follow_their_values() -> None:
    plain = {o["kind"] for o in rendered("default")}
    assert {"ServiceAccount", "ConfigMap", "Service", "Deployment", "NetworkPolicy", "PodDisruptionBudget"} <= plain
    assert "HorizontalPodAutoscaler" not in plain
    everything = rendered("everything")
    hpa = find(everything, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2" and "replicas" not in find(everything, "Deployment")["spec"]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in find(everything, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert env["CLOUDPILOT_STORE__URL"] == {"name": "cp-store", "key": "url"}
    assert (
        env["CLOUDPILOT_LLM__API_KEY"]["name"] == "cp-llm"
        and env["CLOUDPILOT_FEISHU__APP_SECRET"]["name"] == "cp-feishu"
    )
    assert {
        "CLOUDPILOT_SLACK__BOT_TOKEN",
        "CLOUDPILOT_SLACK__SIGNING_SECRET",
        "CLOUDPILOT_SERVER__OIDC_ISSUER",
        "CLOUDPILOT_WATCH__TOKEN",
    } <= set(env)
    bare = {
        o["kind"]
        for o in render(
            "cp",
            "cloudpilot",
            sets=["networkPolicy.enabled=false", "podDisruptionBudget.enabled=false", "rbac.create=false"],
        )
    }
    assert not bare & {
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ClusterRole",
        "Role",
        "ClusterRoleBinding",
        "RoleBinding",
    }


def test_network_policy_lets_in_only_the_http_port() -> None:
    policy = find(rendered("readonly"), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    dns, api_server, *others = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api_server["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}] and {p["port"] for p in api_server["ports"]} == {
        443,
        6443,
    }
    assert others == [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (["terminationGracePeriodSeconds=20"], "terminationGracePeriodSeconds (20) must exceed"),
        (["replicaCount=2"], "several replicas need the shared PostgreSQL store"),
        (["autoscaling.enabled=true"], "several replicas need the shared PostgreSQL store"),
        (["settings.safety.allow_write=true"], "follow rbac.write.enabled"),
        (["rbac.destructive.enabled=true"], "rbac.destructive.enabled needs rbac.write.enabled"),
        (
            ["persistence.existingClaim=data", "replicaCount=2", "secrets.store.existingSecret=s"],
            "use it with one replica",
        ),
    ],
)
def test_values_that_would_deploy_something_broken_are_refused(sets: list[str], says: str) -> None:
    with pytest.raises(RenderError, match=re.escape(says)):
        render("cp", "cloudpilot", sets=sets)


def test_every_value_is_documented() -> None:
    """Each key of values.yaml has a comment on the line above (what sits in a list item is data, not a value)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    item_indent = None  # indentation of the list item the lines below belong to
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if line.lstrip().startswith("- "):
            item_indent = indent
            continue
        key = re.match(r"^\s*([A-Za-z][\w.-]*):", line)
        if not key or (item_indent is not None and indent > item_indent):
            continue
        item_indent = None
        if not lines[i - 1].lstrip().startswith("#"):
            undocumented.append(f"line {i + 1}: {key.group(1)}")
    assert not undocumented, undocumented
    assert yaml.safe_load((CHART / "values.yaml").read_text())["rbac"]["write"]["enabled"] is False


@pytest.fixture
def namespaces(cluster) -> Iterator[list[str]]:
    """Three fresh namespaces: the release's and two the write role is bound in."""
    names = [f"cp-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for name in names:
        cluster.core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=name)))
    yield names
    for name in names:
        cluster.core.delete_namespace(name)


@pytest.mark.parametrize("case", CASES)
def test_the_api_server_accepts_the_manifests_in_a_server_side_dry_run(case: str, cluster, namespaces) -> None:
    release, *writable = namespaces
    objects = rendered(case, release, [f"rbac.write.namespaces={{{','.join(writable)}}}"])
    done = kubectl(cluster.kubeconfig, "apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=as_yaml(objects))
    assert done.returncode == 0, done.stderr
    answered = json.loads(done.stdout)
    items = answered["items"] if answered.get("kind") == "List" else [answered]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in items) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in objects
    )
    deployment = next(o for o in items if o["kind"] == "Deployment")  # defaulted and validated by the API server
    assert deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
    role = find(objects, "ClusterRole", "-read")["metadata"]["name"]
    missing = kubectl(cluster.kubeconfig, "get", "clusterrole", role)
    assert missing.returncode != 0 and "NotFound" in missing.stderr  # a dry run leaves nothing behind


def test_the_image_recipe_copies_exactly_the_package() -> None:
    recipe = (REPO / "deploy" / "Containerfile").read_text()
    builder, runtime = recipe.split("\nFROM ${PYTHON_IMAGE}\n")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    wanted = {f"{m}.py" for m in setuptools["py-modules"]} | {"pyproject.toml", project["project"]["readme"]}
    wanted |= {p.rstrip("*") + "/" for p in setuptools["packages"]["find"]["include"]}
    copied = {src for line in builder.splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]}
    assert copied == wanted
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert not {c.rstrip("/") for c in copied} & ignored
    assert "pip install ." in builder and "ADD " not in recipe
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert 'ENTRYPOINT ["cloudpilot", "--transport", "http", "--host", "0.0.0.0"]' in runtime
    assert "COPY --from=builder /opt/cloudpilot /opt/cloudpilot" in runtime
