"""The per-identity access policy: which toolsets a caller sees, and whether write tools are visible to them.

Tokens say how far a caller may go (read < write < destructive); `server.access_rules` narrows that per identity.
The first rule whose `match` names the caller decides; callers no rule names get `server.access_default`. A caller
is named by the keys `identity_keys` gives: `oidc:<principal>` or `token:<name>` over HTTP, `group:<g>` for each
group of an OIDC token, and `local` for whoever started the server. Patterns are shell-style (`oidc:*@example.com`).

A narrowed caller is not even shown what they may not use (tools/list), and calling it anyway gets an error that
says which rule hides it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace

from runtime import Principal
from settings import TOOLSETS, AccessRule, ServerSettings

WRITE_ACCESS = frozenset({"write", "destructive"})


def rule_for(settings: ServerSettings, keys: list[str]) -> tuple[int | None, AccessRule]:
    """(index of the rule that applies, or None for the default; the rule)."""
    for i, rule in enumerate(settings.access_rules):
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in rule.match for key in keys):
            return i, rule
    return None, settings.access_default


def apply(settings: ServerSettings, principal: Principal, keys: list[str]) -> Principal:
    """`principal` narrowed by the rule that applies to it (unchanged when no rule is configured)."""
    if not settings.access_rules and settings.access_default.toolsets == ["*"] and settings.access_default.writes:
        return principal
    _, rule = rule_for(settings, keys)
    toolsets = frozenset(TOOLSETS) if "*" in rule.toolsets else frozenset(rule.toolsets)
    if principal.toolsets is not None:
        toolsets &= principal.toolsets
    scopes = principal.scopes if rule.writes else principal.scopes - WRITE_ACCESS
    return replace(principal, scopes=scopes, toolsets=toolsets)
