"""Pod rules: crash loops, OOM kills, image pulls, missing config, scheduling, probes, restarts, stuck deletion.

Each rule reports one finding per pod (and container); the engine folds the pods of one workload together.
Fixes target the owning workload, since changing a controlled pod does not last.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

from engines.diagnosis.admission import defaulted_by
from engines.diagnosis.common import (
    container_spec,
    container_statuses,
    containers,
    event_summary,
    fmt_resource,
    owning_deployment,
    pod_finding,
    pod_requests,
    present,
    quantity,
    rollback_fix,
    seen_since,
)
from engines.diagnosis.model import Finding, Fix, ObjectRef
from engines.diagnosis.snapshot import (
    Obj,
    Snapshot,
    condition,
    labels_of,
    meta,
    name_of,
    ns_of,
    selector_matches,
)
from kube.times import parse_time

EXIT_CODES = {
    1: "application error",
    2: "misuse of shell builtin / bad arguments",
    126: "command not executable",
    127: "command not found",
    128: "invalid exit argument",
    134: "aborted (SIGABRT)",
    137: "killed (SIGKILL: OOM or liveness probe)",
    139: "segmentation fault (SIGSEGV)",
    143: "terminated (SIGTERM)",
}
IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
_NOT_FOUND = ("not found", "manifest unknown", "does not exist", "invalid reference format", "no such host")
_AUTH = ("unauthorized", "authentication required", "401", "403", "denied", "no basic auth credentials")


def _fix_target(snap: Snapshot, pod: Obj) -> ObjectRef:
    return snap.owner(pod) or snap.ref(pod, "Pod")


# -- crash loops and OOM kills ---------------------------------------------------------------------------
def crashes(snap: Snapshot) -> Iterator[Finding]:
    for pod in snap.unhealthy_pods:
        for cs in container_statuses(pod):
            state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated") or {}
            current = state.get("terminated") or {}
            waiting = state.get("waiting") or {}
            if "OOMKilled" in (last.get("reason"), current.get("reason")):
                if cs.get("ready") and _older_than_hour(snap, last.get("finishedAt")):
                    continue  # one old OOM kill of a container that has run fine since
                yield _oom(snap, pod, cs, last if last.get("reason") == "OOMKilled" else current)
            elif waiting.get("reason") == "CrashLoopBackOff":
                yield _crashloop(snap, pod, cs, last, waiting)


def _older_than_hour(snap: Snapshot, timestamp: str | None) -> bool:
    finished = parse_time(timestamp)
    return finished is not None and finished < snap.now - timedelta(hours=1)


def _oom(snap: Snapshot, pod: Obj, cs: Obj, term: Obj) -> Finding:
    name = cs.get("name", "")
    spec = container_spec(pod.get("spec") or {}, name) or {}
    resources = spec.get("resources") or {}
    limit = (resources.get("limits") or {}).get("memory")
    evidence: dict[str, Any] = {
        "container": name,
        "last_termination": f"OOMKilled (exit {term.get('exitCode', 137)})",
        "finished_at": term.get("finishedAt"),
        "restarts": cs.get("restartCount", 0),
        "memory_limit": limit,
        "memory_request": (resources.get("requests") or {}).get("memory"),
    }
    fix = None
    if limit:
        raised = quantity(limit) * 2
        fix = Fix(
            action="set_resources",
            target=_fix_target(snap, pod),
            container=name,
            params={"limits": {"memory": fmt_resource("memory", raised)}},
        )
        remediation = (
            f"Container {name} used more than its {limit} memory limit. Raise the limit (from observed "
            "usage if metrics exist; the fix doubles it) or reduce the application's memory use."
        )
    else:
        remediation = (
            f"Container {name} has no memory limit, so the node ran out of memory: set a memory "
            "request/limit that matches its usage and check the node for memory pressure."
        )
    cause = defaulted_by(snap, pod, name, "memory limit")
    if cause:
        evidence["limit_from"] = cause.short()
        remediation += f" The limit is {cause.short()}'s namespace default: raise it there, or set one in the template."
    return pod_finding(
        snap,
        pod,
        code="POD_OOMKILLED",
        severity="critical",
        summary=f"container {name} was OOMKilled ({cs.get('restartCount', 0)} restarts)",
        evidence=evidence,
        remediation=remediation,
        fix=fix,
        cause=cause,
    )


def _crashloop(snap: Snapshot, pod: Obj, cs: Obj, last: Obj, waiting: Obj) -> Finding:
    name = cs.get("name", "")
    code = last.get("exitCode")
    evidence: dict[str, Any] = {
        "container": name,
        "restarts": cs.get("restartCount", 0),
        "last_termination": f"{last.get('reason') or 'Error'} (exit {code})" if last else None,
        "exit_code_meaning": EXIT_CODES.get(code) if isinstance(code, int) else None,
        "finished_at": last.get("finishedAt"),
        "waiting": waiting.get("message"),
    }
    if last.get("message"):
        evidence["termination_message"] = str(last["message"])[:300]
    fix = None
    dep = owning_deployment(snap, pod)
    undo = rollback_fix(snap, dep) if dep else None
    if undo:
        fix, extra = undo
        evidence.update(extra)
    remediation = (
        f"Read the previous log of container {name} (logs with previous=true) for the crash; "
        "exit code " + (f"{code} means {EXIT_CODES[code]}" if code in EXIT_CODES else f"{code}") + "."
    )
    if fix:
        remediation += " The crash began with the newest revision: rolling back restores the previous one."
    return pod_finding(
        snap,
        pod,
        code="POD_CRASHLOOP",
        severity="critical",
        tier=1,
        summary=f"container {name} is in CrashLoopBackOff"
        + (f", last exit {last.get('reason') or 'Error'} ({code})" if last else ""),
        evidence=present(evidence),
        remediation=remediation,
        fix=fix,
    )


# -- images -----------------------------------------------------------------------------------------------
def image_pull(snap: Snapshot) -> Iterator[Finding]:
    for pod in snap.unhealthy_pods:
        for cs in container_statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL:
                yield _image_finding(snap, pod, cs, waiting)


def _image_finding(snap: Snapshot, pod: Obj, cs: Obj, waiting: Obj) -> Finding:
    ns, name = ns_of(pod), cs.get("name", "")
    spec = container_spec(pod.get("spec") or {}, name) or {}
    image = spec.get("image") or cs.get("image")
    events = [e for e in snap.events_for("Pod", ns, name_of(pod)) if image and image in str(e.get("message"))]
    texts = " ".join([str(waiting.get("message") or "")] + [str(e.get("message") or "") for e in events]).lower()
    pull_secrets = [s.get("name") for s in (pod.get("spec") or {}).get("imagePullSecrets") or []]
    missing = [s for s in pull_secrets if snap.covers("secrets", ns) and not snap.get("secrets", ns, s)]
    evidence: dict[str, Any] = {
        "container": name,
        "image": image,
        "reason": waiting.get("reason"),
        "message": str(waiting.get("message") or "")[:300] or None,
        "events": event_summary(events) or None,
        "image_pull_secrets": pull_secrets or None,
    }
    fix: Fix | None = None
    if missing:
        code, summary = "POD_PULL_SECRET_MISSING", f"image pull secret {missing[0]} does not exist"
        evidence["missing_secrets"] = missing
        remediation = (
            f"Create the docker-registry Secret {missing[0]} in namespace {ns} (credentials from "
            "the registry owner) or remove it from imagePullSecrets."
        )
        fix = Fix(
            action="create_missing",
            target=snap.make_ref("Secret", missing[0], ns),
            params={"type": "kubernetes.io/dockerconfigjson"},
        )
    elif waiting.get("reason") == "InvalidImageName" or (any(t in texts for t in _NOT_FOUND) and not _auth_only(texts)):
        code, summary = "POD_IMAGE_NOT_FOUND", f"image {image} does not exist (bad name or tag)"
        remediation = f"Correct the image name or tag of container {name}, or roll back to the last working image."
    elif any(t in texts for t in _AUTH):
        code, summary = "POD_REGISTRY_AUTH", f"registry refused to serve {image} (authentication)"
        remediation = (
            "The registry requires credentials: add an imagePullSecret with valid credentials for it "
            "(or to the service account), or check the existing secret has not expired."
        )
    else:
        code, summary = "POD_IMAGE_PULL", f"cannot pull image {image}"
        remediation = "Check the registry is reachable from the nodes and the image reference is right."
    if code == "POD_IMAGE_NOT_FOUND":
        dep = owning_deployment(snap, pod)
        undo = rollback_fix(snap, dep) if dep else None
        if undo:
            fix, extra = undo
            evidence.update(extra)
    return pod_finding(
        snap,
        pod,
        code=code,
        severity="critical",
        summary=f"container {name}: {summary}",
        evidence=present(evidence),
        remediation=remediation,
        fix=fix,
    )


def _auth_only(texts: str) -> bool:
    # Docker Hub answers "pull access denied ... repository does not exist or may require 'docker login'"
    # for both a missing image and missing credentials: only the auth words are reliable there.
    return "may require" in texts or "unauthorized" in texts or "authentication required" in texts


# -- configuration ------------------------------------------------------------------------------------------
_MISSING_OBJ = re.compile(r'(configmap|secret) "([^"]+)" not found', re.I)
_MISSING_KEY = re.compile(r"couldn't find key (\S+) in (ConfigMap|Secret) (?:[^/\s]+/)?(\S+)")


def config_missing(snap: Snapshot) -> Iterator[Finding]:
    for pod in snap.unhealthy_pods:
        if (pod.get("status") or {}).get("phase") not in ("Pending", None):
            continue
        ns = ns_of(pod)
        messages = [
            str(((cs.get("state") or {}).get("waiting") or {}).get("message") or "")
            for cs in container_statuses(pod)
            if ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CreateContainerConfigError"
        ]
        messages += [
            str(e.get("message") or "")
            for e in snap.events_for("Pod", ns, name_of(pod))
            if e.get("reason") in ("FailedMount", "Failed") and "not found" in str(e.get("message"))
        ]
        missing: dict[tuple[str, str], str | None] = {}
        for text in messages:
            for m in _MISSING_OBJ.finditer(text):
                missing[("ConfigMap" if m.group(1).lower() == "configmap" else "Secret", m.group(2))] = None
            for m in _MISSING_KEY.finditer(text):
                missing[(m.group(2), m.group(3))] = m.group(1)
        for kind, ref, optional in _config_refs(pod.get("spec") or {}):
            key = "configmaps" if kind == "ConfigMap" else "secrets"
            if not optional and snap.covers(key, ns) and snap.get(key, ns, ref) is None:
                missing.setdefault((kind, ref), None)
        if not missing:
            continue
        (kind, ref), missing_key = next(iter(missing.items()))
        what = f"key {missing_key} of {kind} {ref}" if missing_key else f"{kind} {ref}"
        yield pod_finding(
            snap,
            pod,
            code="POD_CONFIG_MISSING",
            severity="critical",
            summary=f"containers cannot start: {what} is missing",
            evidence={
                "missing": [f"{k} {n}" + (f" key {key}" if key else "") for (k, n), key in missing.items()],
                "messages": [m[:300] for m in messages[:3]] or None,
            },
            remediation=f"Create {what} in namespace {ns} (its content must come from the application's "
            "owner), or correct the reference in the pod template.",
            fix=Fix(
                action="create_missing",
                target=snap.make_ref(kind, ref, ns),
                params={"key": missing_key} if missing_key else {},
            ),
        )


def _config_refs(pod_spec: Obj) -> Iterator[tuple[str, str, bool]]:
    for c in containers(pod_spec):
        for env in c.get("env") or []:
            src = env.get("valueFrom") or {}
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if src.get(field):
                    yield kind, src[field].get("name", ""), bool(src[field].get("optional"))
        for env in c.get("envFrom") or []:
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if env.get(field):
                    yield kind, env[field].get("name", ""), bool(env[field].get("optional"))
    for vol in pod_spec.get("volumes") or []:
        if vol.get("configMap"):
            yield "ConfigMap", vol["configMap"].get("name", ""), bool(vol["configMap"].get("optional"))
        if vol.get("secret"):
            yield "Secret", vol["secret"].get("secretName", ""), bool(vol["secret"].get("optional"))


# -- scheduling ------------------------------------------------------------------------------------------
_COUNTED = re.compile(r"^(\d+) (.+)$")
_TOTAL = re.compile(r"\d+/(\d+) nodes are available")
# the node's own affinity/selector, not pod (anti-)affinity and not a volume's node affinity (its zone)
_NODE_AFFINITY = re.compile(r"^(?!.*volume).*(node affinity|node selector|affinity/selector)", re.I)
_SEPARATOR = re.compile(r"[,.]\s+")


def _node_total(message: str) -> int | None:
    """N of '0/N nodes are available', the first one (before any preemption note)."""
    m = _TOTAL.search(message)
    return int(m.group(1)) if m else None


def scheduler_reasons(message: str) -> dict[str, int]:
    """'0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 Insufficient cpu. preemption: ...'
    → {'node(s) had untolerated taint(s)': 1, 'Insufficient cpu': 2}."""
    head = message.split(" preemption:")[0]
    _, _, rest = head.partition("available: ")
    out: dict[str, int] = {}
    for part in _SEPARATOR.split(rest):
        m = _COUNTED.match(part.strip().rstrip("."))
        if m:
            out[m.group(2)] = int(m.group(1))
    return out


def unschedulable(snap: Snapshot) -> Iterator[Finding]:
    for pod in snap.unhealthy_pods:
        cond = condition(pod, "PodScheduled")
        if not cond or cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
            continue
        message = str(cond.get("message") or "")
        yield _unschedulable(snap, pod, message, scheduler_reasons(message))


def _unschedulable(snap: Snapshot, pod: Obj, message: str, reasons: dict[str, int]) -> Finding:
    spec = pod.get("spec") or {}
    events = [e for e in snap.events_for("Pod", ns_of(pod), name_of(pod)) if e.get("reason") == "FailedScheduling"]
    evidence: dict[str, Any] = {"scheduler": message[:400]}
    if events:
        evidence["failed_scheduling_events"] = sum(int(e.get("count") or 1) for e in events)
    insufficient = sorted({r.removeprefix("Insufficient ") for r in reasons if r.startswith("Insufficient ")})
    if "Too many pods" in " ".join(reasons):
        insufficient.append("pods")
    if "PersistentVolumeClaim" in message:
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or [] if v.get("persistentVolumeClaim")
        ]
        evidence["claims"] = claims
        return pod_finding(
            snap,
            pod,
            code="POD_PVC_UNBOUND",
            severity="critical",
            tier=1,
            summary=f"pending: PersistentVolumeClaim {', '.join(claims)} is not bound",
            evidence=evidence,
            remediation="Fix the claim first (see its PVC finding): a missing StorageClass or no "
            "matching PersistentVolume keeps it Pending.",
        )
    if insufficient:
        return _insufficient(snap, pod, insufficient, evidence)
    every_reason, total = reasons, _node_total(message)
    tainted = sum(n for r, n in reasons.items() if "taint" in r)
    if _selected_nodes_all_tainted(snap, spec):
        reasons = {"untolerated taint": 1}
    elif total is not None and 0 < tainted < total and not any(_NODE_AFFINITY.search(r) for r in reasons):
        reasons = {r: n for r, n in reasons.items() if "taint" not in r}  # taints explain only some nodes
    if any(_NODE_AFFINITY.search(r) for r in reasons):
        evidence["node_selector"] = spec.get("nodeSelector")
        if (spec.get("affinity") or {}).get("nodeAffinity"):
            evidence["node_affinity"] = spec["affinity"]["nodeAffinity"]
        return pod_finding(
            snap,
            pod,
            code="POD_NODE_AFFINITY_MISMATCH",
            severity="critical",
            summary="pending: its node selector/affinity matches no schedulable node",
            evidence=present(evidence),
            remediation="Correct the nodeSelector/affinity to labels the nodes carry, or label the intended nodes.",
        )
    if any("taint" in r for r in reasons):
        taints = sorted(
            {
                f"{t.get('key')}={t.get('value', '')}:{t.get('effect')}"
                for n in snap.items("nodes")
                for t in (n.get("spec") or {}).get("taints") or []
            }
        )
        evidence["node_taints"] = taints[:10]
        evidence["tolerations"] = spec.get("tolerations") or []
        return pod_finding(
            snap,
            pod,
            code="POD_TAINT_NOT_TOLERATED",
            severity="critical",
            summary="pending: every node has a taint the pod does not tolerate",
            evidence=evidence,
            remediation="Add a toleration for the taint, or remove the taint from the nodes meant to run this pod.",
        )
    evidence["reasons"] = every_reason
    return pod_finding(
        snap,
        pod,
        code="POD_UNSCHEDULABLE",
        severity="critical",
        summary="pending: the scheduler finds no node",
        evidence=evidence,
        remediation="Read the scheduler's reasons in the evidence (nodes per reason): each group of nodes "
        "needs its own change (topology spread, pod (anti-)affinity, volume zone, taints).",
    )


def _selected_nodes_all_tainted(snap: Snapshot, spec: Obj) -> bool:
    """True when the nodes the pod's nodeSelector picks exist but all carry a taint it does not tolerate:
    then the taint, not the selector, is what keeps it Pending."""
    selector = spec.get("nodeSelector")
    if not selector:
        return False
    chosen = [n for n in snap.items("nodes") if selector_matches(labels_of(n), selector)]
    return bool(chosen) and all(
        any(
            t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(spec.get("tolerations") or [], t)
            for t in (n.get("spec") or {}).get("taints") or []
        )
        for n in chosen
    )


def _insufficient(snap: Snapshot, pod: Obj, resources: list[str], evidence: dict[str, Any]) -> Finding:
    spec = pod.get("spec") or {}
    asked_for = pod_requests(spec)
    usage_known = snap.covers("pods", None)
    nodes = [n for n in snap.items("nodes") if _can_host(n, spec)]
    fit: dict[str, Decimal] = {}
    for res in resources:
        best = Decimal(0)
        for node in nodes:
            room = quantity(((node.get("status") or {}).get("allocatable") or {}).get(res))
            if usage_known:
                room -= sum(
                    (
                        pod_requests(p.get("spec") or {}).get(res, Decimal(0))
                        for p in snap.pods_by_node.get(name_of(node), [])
                        if p is not pod
                    ),
                    Decimal(0),
                )
            best = max(best, room)
        fit[res] = best
    evidence["requests"] = {r: fmt_resource(r, asked_for.get(r, Decimal(0))) for r in resources}
    label = "free on the best node" if usage_known else "allocatable on the largest node"
    evidence[label] = {r: fmt_resource(r, v) for r, v in fit.items()}
    new: dict[str, str] = {}
    for res in resources:
        if res in ("cpu", "memory") and Decimal(0) < fit[res] < asked_for.get(res, Decimal(0)):
            step = Decimal("0.1") if res == "cpu" else Decimal(64 * 2**20)
            value = (fit[res] * Decimal("0.9") // step) * step
            if value > 0:
                new[res] = fmt_resource(res, value)
    fix = None
    container = None
    if new:
        # Lower the largest requester: with one container (the usual case) that is the whole change.
        cs = max(
            spec.get("containers") or [{}],
            key=lambda c: quantity(((c.get("resources") or {}).get("requests") or {}).get(resources[0])),
        )
        container = cs.get("name")
        fix = Fix(action="set_resources", target=_fix_target(snap, pod), container=container, params={"requests": new})
    asked = ", ".join(f"{r} {evidence['requests'][r]}" for r in resources)
    return pod_finding(
        snap,
        pod,
        code="POD_INSUFFICIENT_RESOURCES",
        severity="critical",
        summary=f"pending: no node has room for its requests ({asked})",
        evidence=evidence,
        remediation="Lower the requests to what the container needs (at most what fits a node), or add "
        "nodes / free capacity." + (f" Suggested requests: {new}." if new else ""),
        fix=fix,
    )


def _can_host(node: Obj, pod_spec: Obj) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    ready = condition(node, "Ready")
    if not ready or ready.get("status") != "True":
        return False
    return all(
        tolerates(pod_spec.get("tolerations") or [], t)
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
    )


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol["effect"] != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol["key"] == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


# -- probes -----------------------------------------------------------------------------------------------
_PROBE_MSG = re.compile(r"^(Liveness|Readiness|Startup) probe (?:failed|errored)", re.I)
_FIELD_CONTAINER = re.compile(r"spec\.(?:init)?[cC]ontainers\{([^}]+)\}")


def probes(snap: Snapshot) -> Iterator[Finding]:
    for pod in snap.unhealthy_pods:
        groups: dict[tuple[str, str], list[Obj]] = {}
        spec = pod.get("spec") or {}
        recent = snap.now - timedelta(hours=1)  # a failing probe re-fires every period: older ones are history
        for ev in snap.events_for("Pod", ns_of(pod), name_of(pod)):
            m = _PROBE_MSG.match(str(ev.get("message") or ""))
            if ev.get("reason") != "Unhealthy" or not m or not seen_since(ev, recent):
                continue
            fm = _FIELD_CONTAINER.search(str((ev.get("involvedObject") or {}).get("fieldPath") or ""))
            kind = m.group(1).lower()
            cname = fm.group(1) if fm else next((c.get("name") for c in containers(spec) if c.get(f"{kind}Probe")), "")
            groups.setdefault((cname or "", kind), []).append(ev)
        for (cname, kind), events in groups.items():
            container = container_spec(spec, cname)
            if container and container.get(f"{kind}Probe"):
                yield _probe_finding(snap, pod, container, kind, events)


def _probe_port(container: Obj, port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    return int(port) if isinstance(port, str) and port.isdigit() else None


def _probe_finding(snap: Snapshot, pod: Obj, container: Obj, kind: str, events: list[Obj]) -> Finding:
    probe = container[f"{kind}Probe"]
    handler_name = next((h for h in ("httpGet", "tcpSocket", "grpc", "exec") if h in probe), "exec")
    handler = probe.get(handler_name) or {}
    declared = [int(p["containerPort"]) for p in container.get("ports") or [] if p.get("containerPort")]
    port = _probe_port(container, handler.get("port")) if "port" in handler else None
    text = " ".join(str(e.get("message") or "") for e in events).lower()
    timing = {
        "initialDelaySeconds": probe.get("initialDelaySeconds", 0),
        "periodSeconds": probe.get("periodSeconds", 10),
        "timeoutSeconds": probe.get("timeoutSeconds", 1),
        "failureThreshold": probe.get("failureThreshold", 3),
    }
    cname = container.get("name", "")
    ready = next((cs.get("ready") for cs in container_statuses(pod) if cs.get("name") == cname), False)
    evidence: dict[str, Any] = {
        "container": cname,
        "probe": kind,
        "handler": {handler_name: handler},
        "timing": timing,
        "container_ports": declared,
        "failures": sum(int(e.get("count") or 1) for e in events),
        "events": event_summary(events),
    }
    unserved_port = "port" in handler and (port is None or (declared and port not in declared))
    bad_target = unserved_port or "statuscode: 404" in text or "connection refused" in text
    slow = "deadline exceeded" in text or "timeout" in text
    aggressive = (
        timing["periodSeconds"] < 5 or timing["failureThreshold"] < 2 or (slow and timing["timeoutSeconds"] <= 1)
    )
    sane = {
        "periodSeconds": max(timing["periodSeconds"], 10),
        "timeoutSeconds": max(timing["timeoutSeconds"], 3),
        "failureThreshold": max(timing["failureThreshold"], 3),
        "initialDelaySeconds": max(timing["initialDelaySeconds"], 10 if kind == "liveness" else 0),
    }
    severity = "critical" if kind != "readiness" or not ready else "warning"
    fix: Fix | None = None
    target = _fix_target(snap, pod)
    if bad_target:
        code = "POD_PROBE_BAD_TARGET"
        what = f"{handler_name} {handler.get('path', '')} on port {handler.get('port')}".replace("  ", " ")
        summary = f"{kind} probe of {cname} checks {what}, which the container does not serve"
        if declared:
            params: dict[str, Any] = {"probe": kind, "handler": {"tcpSocket": {"port": declared[0]}}}
            if aggressive:
                params["timing"] = sane
            fix = Fix(action="set_probe", target=target, container=cname, params=params)
        remediation = (
            f"Point the {kind} probe at an endpoint the container serves"
            + (f" (it exposes port {declared[0]}; a TCP check there is the safe default)" if declared else "")
            + "."
        )
    elif aggressive:
        code = "POD_PROBE_AGGRESSIVE"
        summary = (
            f"{kind} probe of {cname} is too aggressive (every {timing['periodSeconds']}s, timeout "
            f"{timing['timeoutSeconds']}s, {timing['failureThreshold']} failure(s) allowed)"
        )
        fix = Fix(action="set_probe", target=target, container=cname, params={"probe": kind, "timing": sane})
        remediation = (
            "Relax the probe timing so slow responses do not count as failures: "
            + ", ".join(f"{k}={v}" for k, v in sane.items())
            + "."
        )
    else:
        code = "POD_PROBE_FAILING"
        summary = f"{kind} probe of {cname} is failing"
        remediation = "The endpoint answers but reports unhealthy: check the application's health and its log."
    if kind == "liveness":
        remediation += " Failing liveness probes restart the container."
    return pod_finding(
        snap, pod, code=code, severity=severity, summary=summary, evidence=evidence, remediation=remediation, fix=fix
    )


# -- restarts and deletion ----------------------------------------------------------------------------------
RESTART_THRESHOLD = 5


def restarts(snap: Snapshot) -> Iterator[Finding]:
    recent = snap.now - timedelta(hours=1)
    for pod in snap.unhealthy_pods:
        for cs in container_statuses(pod):
            last = (cs.get("lastState") or {}).get("terminated") or {}
            finished = parse_time(last.get("finishedAt"))
            if (
                "running" not in (cs.get("state") or {})
                or cs.get("restartCount", 0) < RESTART_THRESHOLD
                or finished is None
                or finished < recent
                or last.get("reason") == "OOMKilled"
            ):
                continue
            name = cs.get("name", "")
            yield pod_finding(
                snap,
                pod,
                code="POD_RESTARTING",
                severity="warning",
                tier=1,
                summary=f"container {name} keeps restarting ({cs['restartCount']} restarts, last within the hour)",
                evidence={
                    "container": name,
                    "restarts": cs["restartCount"],
                    "last_finished_at": last.get("finishedAt"),
                    "last_termination": f"{last.get('reason') or 'Error'} (exit {last.get('exitCode')})",
                },
                remediation="Read the previous container log around the last termination; if restarts follow "
                "load, check memory and probe timing.",
            )


TERMINATING_GRACE = timedelta(minutes=1)
KILL_FAILURES = ("FailedKillPod", "ExceededGracePeriod")
KILL_RECENT = timedelta(hours=1)


def _kill_failures(snap: Snapshot, pod: Obj) -> list[Obj]:
    """The kubelet's recent reports that the runtime did not stop the pod: killing it failed (FailedKillPod), or
    an eviction's or preemption's kill outlasted the grace period (ExceededGracePeriod)."""
    since = snap.now - KILL_RECENT
    created = parse_time(meta(pod).get("creationTimestamp"))
    if created is not None and created.tzinfo is not None:
        since = max(since, created)
    return [
        e
        for e in snap.events_for("Pod", ns_of(pod), name_of(pod))
        if e.get("reason") in KILL_FAILURES and seen_since(e, since)
    ]


def stuck_terminating(snap: Snapshot) -> Iterator[Finding]:
    """Pods deleted long ago that are still there, and pods the kubelet is trying to stop (deleted, evicted,
    preempted, past their activeDeadlineSeconds) while the runtime fails to kill them."""
    for pod in snap.items("pods"):
        status: Obj = pod["status"] if isinstance(pod.get("status"), dict) else {}
        phase = status.get("phase")
        if phase == "Succeeded" or (phase == "Failed" and not meta(pod).get("deletionTimestamp")):
            continue
        kill = _kill_failures(snap, pod)
        deleted = parse_time(meta(pod).get("deletionTimestamp"))
        if deleted is None:
            if kill:
                yield _kill_failed(snap, pod, kill)
            continue
        finalizers = meta(pod).get("finalizers") or []
        if snap.now < deleted + (timedelta(0) if finalizers else TERMINATING_GRACE):
            continue
        if kill and not finalizers:
            yield _kill_failed(snap, pod, kill)
            continue
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = snap.get("nodes", "", node_name) if node_name else None
        ready = condition(node, "Ready") if node else None
        node_state = (
            "missing" if node is None and snap.covers("nodes") and node_name else (ready or {}).get("status", "unknown")
        )
        evidence = {
            "deletion_timestamp": meta(pod).get("deletionTimestamp"),
            "finalizers": finalizers or None,
            "node_ready": node_state,
        }
        if finalizers:
            why = f"finalizers {', '.join(finalizers)} were never removed"
            remediation = (
                "Find the controller that owns the finalizers; if it is gone, remove them with a patch "
                "(metadata.finalizers=null)."
            )
        else:
            why = "its node never confirmed the deletion"
            remediation = (
                "The kubelet on the node did not confirm: check the node; if it is gone, force-delete "
                "the pod (grace period 0)."
            )
        yield pod_finding(
            snap,
            pod,
            code="POD_STUCK_TERMINATING",
            severity="warning",
            summary=f"stuck Terminating: {why}",
            evidence=present(evidence),
            remediation=remediation,
        )


def _kill_failed(snap: Snapshot, pod: Obj, events: list[Obj]) -> Finding:
    node = (pod.get("spec") or {}).get("nodeName") or "-"
    deleting = bool(meta(pod).get("deletionTimestamp"))
    evidence = {
        "deletion_timestamp": meta(pod).get("deletionTimestamp"),
        "message": str(events[0].get("message") or "")[:400],
        "events": event_summary(events),
    }
    return pod_finding(
        snap,
        pod,
        code="POD_STUCK_TERMINATING",
        severity="warning",
        summary=f"{'stuck Terminating' if deleting else 'does not stop'}: the container runtime on node {node} "
        "fails to kill its containers",
        evidence=present(evidence),
        remediation=f"The kubelet asked the container runtime on node {node} to stop the pod and it did not (the "
        "message quotes the error). Check containerd or CRI-O there (its log, `crictl ps`): a process stuck in "
        "uninterruptible I/O (often a hung NFS or disk) cannot be killed until the storage answers or the node "
        "reboots. Force-deleting the pod removes only the API object, not the processes.",
    )


RULES = [crashes, image_pull, config_missing, unschedulable, probes, restarts, stuck_terminating]
