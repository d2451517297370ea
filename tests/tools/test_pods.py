"""pods_list, pod_get and pod_logs against the real API server."""

import pytest

from errors import InvalidInput, NotFound
from tests.cluster import states
from tools import pods


@pytest.fixture
def broken_pods(cluster, namespace):
    core = cluster.core
    for name in ("ok", "crash", "oom", "pull", "init"):
        states.make_pod(
            core,
            namespace,
            name,
            labels={"app": name, "tier": "web" if name != "ok" else "db"},
            **({"initContainers": [{"name": "setup", "image": "busybox"}]} if name == "init" else {}),
        )
    states.set_pod_status(core, namespace, "ok", containers=[states.running(restarts=1)])
    states.set_pod_status(core, namespace, "crash", containers=[states.crashloop(restarts=7, exit_code=2)])
    states.set_pod_status(core, namespace, "oom", containers=[states.terminated("OOMKilled", 137)])
    states.set_pod_status(
        core,
        namespace,
        "pull",
        phase="Pending",
        containers=[states.waiting("ImagePullBackOff", 'Back-off pulling image "nginx:nope"')],
    )
    states.set_pod_status(
        core,
        namespace,
        "init",
        phase="Pending",
        containers=[states.waiting("PodInitializing")],
        initContainerStatuses=[
            {
                "name": "setup",
                "image": "busybox",
                "imageID": "",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            }
        ],
    )
    return namespace


async def test_pods_list_shows_status_reasons_like_kubectl_unhealthy_first(call, broken_pods):
    result = await call(pods.pods_list, namespace=broken_pods)
    by_name = {p.name: p for p in result.pods}
    assert by_name["crash"].status == "CrashLoopBackOff" and by_name["crash"].restarts == 7
    assert by_name["crash"].last_termination == "Error (2)"
    assert by_name["oom"].status == "OOMKilled"
    assert by_name["pull"].status == "ImagePullBackOff"
    assert by_name["init"].status == "Init:CrashLoopBackOff"
    assert by_name["ok"].status == "Running" and by_name["ok"].ready == "1/1" and by_name["ok"].node == "node-1"
    assert [p.name for p in result.pods][-1] == "ok"  # healthy last
    assert result.by_status == {
        "Running": 1,
        "CrashLoopBackOff": 1,
        "OOMKilled": 1,
        "ImagePullBackOff": 1,
        "Init:CrashLoopBackOff": 1,
    }
    text = result.render()
    assert "CrashLoopBackOff" in text and "5 pods in " + broken_pods in text


async def test_pods_list_filters_pages_and_selects(call, broken_pods):
    problems = await call(pods.pods_list, namespace=broken_pods, problems_only=True)
    assert {p.name for p in problems.pods} == {"crash", "oom", "pull", "init"}
    web = await call(pods.pods_list, namespace=broken_pods, label_selector="tier=web,app in (crash,oom)")
    assert {p.name for p in web.pods} == {"crash", "oom"}
    first = await call(pods.pods_list, namespace=broken_pods, limit=2)
    assert first.page.total == 5 and first.page.returned == 2 and first.page.continue_token
    rest = await call(pods.pods_list, namespace=broken_pods, limit=10, continue_token=first.page.continue_token)
    assert {p.name for p in first.pods} | {p.name for p in rest.pods} == {"ok", "crash", "oom", "pull", "init"}
    pending = await call(pods.pods_list, namespace=broken_pods, field_selector="status.phase=Pending")
    assert {p.name for p in pending.pods} == {"pull", "init"}


async def test_all_namespace_listing_counts_by_namespace(call, broken_pods):
    result = await call(pods.pods_list, problems_only=True, limit=500)
    assert result.namespace is None
    assert result.unhealthy_by_namespace[broken_pods] == 4
    assert {p.name for p in result.pods if p.namespace == broken_pods} == {"crash", "oom", "pull", "init"}


async def test_invalid_input_is_rejected_before_any_call(call):
    with pytest.raises(InvalidInput, match="Label selector"):
        await call(pods.pods_list, namespace="default", label_selector="app=(x")
    with pytest.raises(InvalidInput, match="DNS-1123 label"):
        await call(pods.pods_list, namespace="Not_Valid")


async def test_pod_get_explains_a_pod_and_masks_env(call, cluster, namespace):
    states.make_pod(
        cluster.core,
        namespace,
        "api",
        containers=[
            {
                "name": "app",
                "image": "shop/api:2.1",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": [{"name": "DB_PASSWORD", "value": "hunter2"}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 9090}, "periodSeconds": 2},
            }
        ],
    )
    states.set_pod_status(
        cluster.core, namespace, "api", containers=[states.crashloop(reason="OOMKilled", exit_code=137)]
    )
    states.make_event(cluster.core, namespace, "Pod", "api", "BackOff", "Back-off restarting failed container app")
    detail = await call(pods.pod_get, name="api", namespace=namespace)
    assert detail.status == "CrashLoopBackOff"
    c = detail.containers[0]
    assert c.last_termination == "OOMKilled (exit 137)" and c.requests == {"cpu": "250m", "memory": "256Mi"}
    assert c.probes["readinessProbe"].startswith("http-get /healthz:9090") and c.ports == ["8080/TCP http"]
    assert detail.events[0].reason == "BackOff"
    full = await call(pods.pod_get, name="api", namespace=namespace, output="yaml")
    assert "hunter2" not in full.render() and "DB_PASSWORD" in full.render()


async def test_pod_get_404_names_the_object_and_namespace(call, namespace):
    with pytest.raises(NotFound, match=f'pods "ghost" in namespace "{namespace}"'):
        await call(pods.pod_get, name="ghost", namespace=namespace)


async def test_pod_logs_through_the_api_server(call, cluster, namespace):
    cp = cluster.require_control_plane()
    states.make_pod(
        cluster.core, namespace, "web", containers=[{"name": "app", "image": "x"}, {"name": "proxy", "image": "y"}]
    )
    lines = [f"line {i}: ok" for i in range(50)] + ["ERROR db connect failed password=hunter2", "line 51: ok"]
    cp.kubelet.set_log(namespace, "web", "app", "\n".join(lines) + "\n")
    cp.kubelet.set_log(namespace, "web", "app", "panic: previous crash\n", previous=True)
    with pytest.raises(InvalidInput, match="2 containers: app, proxy"):
        await call(pods.pod_logs, name="web", namespace=namespace)
    tail = await call(pods.pod_logs, name="web", namespace=namespace, container="app", tail_lines=3)
    assert tail.text.splitlines() == ["line 49: ok", "ERROR db connect failed password=***", "line 51: ok"]
    errors = await call(pods.pod_logs, name="web", namespace=namespace, container="app", grep="error")
    assert errors.lines == 1 and "hunter2" not in errors.text
    capped = await call(pods.pod_logs, name="web", namespace=namespace, container="app", max_bytes=100)
    assert capped.cut and len(capped.text.encode()) <= 100 and capped.text.endswith("line 51: ok")
    previous = await call(pods.pod_logs, name="web", namespace=namespace, container="app", previous=True)
    assert previous.text == "panic: previous crash"
    with pytest.raises(InvalidInput, match="regular expression"):
        await call(pods.pod_logs, name="web", namespace=namespace, container="app", grep="(")
