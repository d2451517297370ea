"""Changes that decide who may do what in the whole cluster: bindings to cluster-admin, roles granting every verb
or resource (or escalate, bind, impersonate), admission webhooks and policies, CustomResourceDefinitions.

Creating, changing or deleting one of these is risk `critical`: it needs `safety.allow_destructive` and is never
pre-approved by policy.
"""

from __future__ import annotations

from typing import Any

RBAC = "rbac.authorization.k8s.io"
ADMISSION = "admissionregistration.k8s.io"
ALWAYS = {
    (ADMISSION, "ValidatingWebhookConfiguration"): "admission webhooks see or change every matching request",
    (ADMISSION, "MutatingWebhookConfiguration"): "admission webhooks see or change every matching request",
    (ADMISSION, "ValidatingAdmissionPolicy"): "admission policies decide which requests the API server accepts",
    (ADMISSION, "ValidatingAdmissionPolicyBinding"): "admission policies decide which requests the API server accepts",
    (ADMISSION, "MutatingAdmissionPolicy"): "admission policies change requests before they are stored",
    (ADMISSION, "MutatingAdmissionPolicyBinding"): "admission policies change requests before they are stored",
    ("apiextensions.k8s.io", "CustomResourceDefinition"): "a CRD defines an API: deleting it deletes all its objects",
}
POWER_VERBS = ("bind", "escalate", "impersonate")


def privileged(group: str, kind: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> str | None:
    """Why a change of this object is a cluster-wide privilege change (judged before and after it), or None."""
    if (group, kind) in ALWAYS:
        return ALWAYS[(group, kind)]
    if group != RBAC:
        return None
    for obj in (before, after):
        reason = _grant(kind, obj) if obj else None
        if reason:
            return reason
    return None


def _grant(kind: str, obj: dict[str, Any]) -> str | None:
    if kind in ("ClusterRoleBinding", "RoleBinding"):
        ref = obj.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole" and ref.get("name") == "cluster-admin":
            return "it binds the cluster-admin role"
    if kind in ("ClusterRole", "Role"):
        for rule in obj.get("rules") or []:
            verbs, resources = set(rule.get("verbs") or []), set(rule.get("resources") or [])
            if "*" in verbs:
                return "it grants every verb ('*')"
            if "*" in resources:
                return "it grants every resource ('*')"
            power = sorted(verbs & set(POWER_VERBS))
            if power:
                return f"it grants {', '.join(power)}"
    return None
