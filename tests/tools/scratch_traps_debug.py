import json
import pytest
from tests.tools.conftest_istio import kube, mesh  # noqa
from tests.tools.diagnosis_traps import TRAPS
from tools.diagnose import diagnose

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

@pytest.mark.parametrize("trap", TRAPS, ids=[t.name for t in TRAPS])
async def test_debug(trap, kube, namespace, call):
    trap.build(kube, namespace)
    result = await call(diagnose, namespace=namespace, force_refresh=True)
    print("\n=====", trap.name)
    print(result.render())
    for path in ("/apis/batch/v1/namespaces/{ns}/jobs", "/apis/apps/v1/namespaces/{ns}/deployments", "/apis/apps/v1/namespaces/{ns}/replicasets", "/apis/apps/v1/namespaces/{ns}/statefulsets", "/apis/apps/v1/namespaces/{ns}/daemonsets", "/apis/batch/v1/namespaces/{ns}/cronjobs", "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"):
        for o in kube.api("GET", path.format(ns=namespace))["items"]:
            print(o["kind"] if "kind" in o else path.rsplit("/",1)[1], o["metadata"]["name"], o["metadata"].get("creationTimestamp"), json.dumps({k: v for k, v in o.get("status", {}).items() if k != "conditions"}), [(c["type"], c["status"], c.get("reason")) for c in o.get("status", {}).get("conditions", [])])
    for p in kube.api("GET", f"/api/v1/namespaces/{namespace}/pods")["items"]:
        print("pod", p["metadata"]["name"], p["status"].get("phase"), p["metadata"].get("deletionTimestamp"), p["metadata"].get("finalizers"), p["metadata"].get("annotations", {}).get("kubernetes.io/limit-ranger"), [c.get("resources") for c in p["spec"]["containers"]])
