"""Field-level edits applied to a copy of an object: the same code plans a change and re-plans it after a
conflict. Each edit checks that what it changes exists (the container, the probe) and says so when not."""

from __future__ import annotations

import copy
from typing import Any

from engines.remediation.model import Edit

Obj = dict[str, Any]
HANDLERS = ("httpGet", "tcpSocket", "grpc", "exec")
PROBES = ("liveness", "readiness", "startup")
TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
SCALABLE_KINDS = ("Deployment", "StatefulSet", "ReplicaSet")
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class EditError(ValueError):
    """An edit does not fit the object (no such container, wrong kind, nothing to change)."""


def apply_edits(obj: Obj, edits: list[Edit]) -> Obj:
    """A copy of `obj` with every edit applied in order."""
    out = copy.deepcopy(obj)
    for edit in edits:
        _EDITS[edit.action](out, edit)
    return out


def pod_template(obj: Obj) -> Obj:
    """The pod template of a workload (a CronJob's job template's), created empty if absent."""
    kind = obj.get("kind")
    spec = obj.setdefault("spec", {})
    if kind == "CronJob":
        return spec.setdefault("jobTemplate", {}).setdefault("spec", {}).setdefault("template", {})
    if kind in TEMPLATE_KINDS:
        return spec.setdefault("template", {})
    raise EditError(
        f"{kind} has no pod template: only {', '.join((*TEMPLATE_KINDS, 'CronJob'))} can be edited "
        "this way (a bare Pod's containers are immutable; change its owner)."
    )


def container(obj: Obj, name: str | None) -> Obj:
    spec = pod_template(obj).setdefault("spec", {})
    found = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    if name is None and len(spec.get("containers") or []) == 1:
        return spec["containers"][0]
    for c in found:
        if c.get("name") == name:
            return c
    names = ", ".join(c.get("name", "?") for c in found) or "none"
    raise EditError(
        f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} has no container {name!r} (containers: {names})."
    )


def exposed_ports(c: Obj) -> list[int]:
    return [int(p["containerPort"]) for p in c.get("ports") or [] if p.get("containerPort")]


def _set_probe(obj: Obj, edit: Edit) -> None:
    kind = edit.params.get("probe")
    if kind not in PROBES:
        raise EditError(f"probe must be one of {', '.join(PROBES)}, got {kind!r}.")
    c = container(obj, edit.container)
    handler, timing = edit.params.get("handler"), edit.params.get("timing") or {}
    probe = dict(c.get(f"{kind}Probe") or {})
    if not probe and not handler:
        raise EditError(f"container {c.get('name')} has no {kind} probe: give a handler to add one.")
    if handler:
        if len(handler) != 1 or next(iter(handler)) not in HANDLERS:
            raise EditError(f"handler must be exactly one of {', '.join(HANDLERS)}, got {list(handler)}.")
        for h in HANDLERS:
            probe.pop(h, None)
        probe.update(copy.deepcopy(handler))
    for key, value in timing.items():
        if key not in (
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "failureThreshold",
            "successThreshold",
        ):
            raise EditError(f"unknown probe timing field {key!r}.")
        probe[key] = int(value)
    c[f"{kind}Probe"] = probe


def _set_resources(obj: Obj, edit: Edit) -> None:
    c = container(obj, edit.container)
    resources = c.setdefault("resources", {})
    for part in ("requests", "limits"):
        for res, value in (edit.params.get(part) or {}).items():
            if value is None:
                (resources.get(part) or {}).pop(res, None)
            else:
                resources.setdefault(part, {})[res] = str(value)


def _set_image(obj: Obj, edit: Edit) -> None:
    image = edit.params.get("image")
    if not image or not isinstance(image, str):
        raise EditError("set_image needs an image.")
    container(obj, edit.container)["image"] = image


def _scale(obj: Obj, edit: Edit) -> None:
    if obj.get("kind") not in SCALABLE_KINDS:
        raise EditError(f"{obj.get('kind')} cannot be scaled: only {', '.join(SCALABLE_KINDS)}.")
    replicas = edit.params.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise EditError(f"replicas must be a whole number >= 0, got {replicas!r}.")
    obj.setdefault("spec", {})["replicas"] = replicas


def _restart(obj: Obj, edit: Edit) -> None:
    meta = pod_template(obj).setdefault("metadata", {})
    meta.setdefault("annotations", {})[RESTARTED_AT] = str(edit.params["at"])


def _set_template(obj: Obj, edit: Edit) -> None:
    if obj.get("kind") != "Deployment":
        raise EditError("Only a Deployment's pod template is restored from a ReplicaSet revision.")
    template = copy.deepcopy(edit.params["template"])
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)  # the controller adds it back
    obj["spec"]["template"] = template


def _cordon(obj: Obj, edit: Edit) -> None:
    if obj.get("kind") != "Node":
        raise EditError("Only a Node can be cordoned or uncordoned.")
    spec = obj.setdefault("spec", {})
    if edit.params.get("unschedulable"):
        spec["unschedulable"] = True
    else:
        spec.pop("unschedulable", None)


def _set_target_port(obj: Obj, edit: Edit) -> None:
    if obj.get("kind") != "Service":
        raise EditError("targetPort belongs to a Service.")
    port, target = edit.params.get("port"), edit.params.get("target_port")
    for p in (obj.get("spec") or {}).get("ports") or []:
        if port in (p.get("port"), p.get("name")):
            p["targetPort"] = target
            return
    raise EditError(f"Service {obj.get('metadata', {}).get('name')} has no port {port!r}.")


def _set_fields(obj: Obj, edit: Edit) -> None:
    """Set each field at its path; every step of the path but the last must already exist (an edit corrects a
    reference, it never invents structure), and the last must exist too unless it is a map key."""
    fields = edit.params.get("fields") or []
    if not fields:
        raise EditError("nothing to change.")
    for path, value in fields:
        here: Any = obj
        for step in path[:-1]:
            try:
                here = here[step]
            except (KeyError, IndexError, TypeError):
                raise EditError(f"{'.'.join(map(str, path))} does not exist on the object.") from None
        last = path[-1]
        if isinstance(here, list):
            if not isinstance(last, int) or not 0 <= last < len(here):
                raise EditError(f"{'.'.join(map(str, path))} does not exist on the object.")
        elif not isinstance(here, dict):
            raise EditError(f"{'.'.join(map(str, path[:-1]))} is not a map.")
        here[last] = value


_EDITS = {
    "set_probe": _set_probe,
    "set_resources": _set_resources,
    "set_image": _set_image,
    "scale": _scale,
    "restart": _restart,
    "set_template": _set_template,
    "cordon": _cordon,
    "set_target_port": _set_target_port,
    "set_fields": _set_fields,
}
