"""Only the pod fields triage reads, decoded straight from the API server's JSON with msgspec.

A full pod list is dominated by fields nobody reads here (managedFields, env, volumes, ...). Decoding
against this schema skips them in C instead of building Python objects for them: ~8x faster than a full
decode on 5,000 pods. The result is plain dicts (absent fields omitted), as `tools.podstatus` expects.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _S(msgspec.Struct, omit_defaults=True):
    pass


class Terminated(_S):
    reason: str | None = None
    exitCode: int | None = None
    signal: int | None = None


class Waiting(_S):
    reason: str | None = None
    message: str | None = None


class State(_S):
    waiting: Waiting | None = None
    running: dict[str, Any] | None = None
    terminated: Terminated | None = None


class LastState(_S):
    terminated: Terminated | None = None


class ContainerStatus(_S):
    name: str = ""
    ready: bool = False
    started: bool | None = None
    restartCount: int = 0
    state: State | None = None
    lastState: LastState | None = None


class Resources(_S):
    requests: dict[str, str] | None = None
    limits: dict[str, str] | None = None


class Container(_S):
    name: str = ""
    restartPolicy: str | None = None
    resources: Resources | None = None


class Condition(_S):
    type: str = ""
    status: str = ""


class Spec(_S):
    nodeName: str | None = None
    containers: list[Container] | None = None
    initContainers: list[Container] | None = None
    overhead: dict[str, str] | None = None


class Status(_S):
    phase: str | None = None
    reason: str | None = None
    conditions: list[Condition] | None = None
    containerStatuses: list[ContainerStatus] | None = None
    initContainerStatuses: list[ContainerStatus] | None = None


class Meta(_S):
    name: str = ""
    namespace: str = ""
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None


class Pod(_S):
    metadata: Meta | None = None
    spec: Spec | None = None
    status: Status | None = None


class ListMeta(_S):
    resourceVersion: str | None = None
    # `continue` is a Python keyword: renamed
    continue_: str | None = msgspec.field(default=None, name="continue")


class PodList(_S):
    items: list[Pod] = msgspec.field(default_factory=list)
    metadata: ListMeta | None = None


_decoder = msgspec.json.Decoder(PodList)


def decode_pods(raw: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """(pods as slim dicts, the list's continue token) from a raw pod-list response."""
    doc = _decoder.decode(raw)
    return msgspec.to_builtins(doc.items), doc.metadata.continue_ if doc.metadata else None
