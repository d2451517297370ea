"""The root object of a signal: what an operator would call "the thing that is broken". Pods come and go with every
restart and rollout; their Deployment, StatefulSet, DaemonSet or Job stays, so a crash loop across ten pods is one
incident, not ten."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_HASH = re.compile(r"^(?P<base>.+)-[bcdfghjklmnpqrstvwxz2456789]{6,10}$")  # a pod-template-hash (safe alphabet)
_POD_OF_REPLICASET = re.compile(r"^(?P<base>.+)-[bcdfghjklmnpqrstvwxz2456789]{6,10}-[bcdfghjklmnpqrstvwxz2456789]{5}$")
_POD_OF_STATEFULSET = re.compile(r"^(?P<base>.+)-(0|[1-9][0-9]{0,4})$")
_JOB_OF_CRONJOB = re.compile(r"^(?P<base>.+)-[0-9]{8,12}$")  # the scheduled time in minutes


def key(kind: str, namespace: str | None, name: str) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def root_of(kind: str, namespace: str | None, name: str, owners: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The root object's key ("Deployment shop/web", "Node node-1").

    `owners` are the object's ownerReferences when known (a Pod from a watch); without them, names are read the
    way the controllers make them (an Event about a Pod that is already gone).
    """
    if kind == "Pod":
        owner = next((o for o in owners or [] if o.get("controller")), None) or next(iter(owners or []), None)
        if owner is not None:
            return root_of(str(owner.get("kind", "")), namespace, str(owner.get("name", "")))
        if owners is None:
            if m := _POD_OF_REPLICASET.match(name):
                return key("Deployment", namespace, m["base"])
            if m := _POD_OF_STATEFULSET.match(name):
                return key("StatefulSet", namespace, m["base"])
        return key("Pod", namespace, name)
    if kind == "ReplicaSet" and (m := _HASH.match(name)):
        return key("Deployment", namespace, m["base"])
    if kind == "Job" and (m := _JOB_OF_CRONJOB.match(name)):
        return key("CronJob", namespace, m["base"])
    return key(kind, namespace, name)
