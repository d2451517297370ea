"""Routing: which Slack channels and Feishu chats a notification goes to (`notify.routes`).

Every rule whose grade, cluster and namespace match adds its destination; when none matches, the notification goes
to `slack.default_channel` and `feishu.default_chat` (those configured). A rule naming a platform that is not
configured is skipped with a warning rather than failing the delivery of the rest.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence

from notifiers.base import Notification
from settings import GRADES, Route, Settings

logger = logging.getLogger(__name__)
GRADE_RANK = {g: i for i, g in enumerate(GRADES)}


def matches(rule: Route, n: Notification) -> bool:
    return (
        GRADE_RANK[n.grade] >= GRADE_RANK[rule.min_grade]
        and _any(rule.clusters, n.cluster)
        and _any(rule.namespaces, n.namespace)
    )


def destinations(n: Notification, platforms: Sequence[str], settings: Settings) -> list[str]:
    """The "platform:id" destinations of `n`, in rule order, each once; only the configured `platforms`."""
    found: list[str] = []
    for rule in settings.notify.routes:
        if not matches(rule, n):
            continue
        if rule.to.partition(":")[0] not in platforms:
            logger.warning("route to %s skipped: that platform is not configured", rule.to)
            continue
        found.append(rule.to)
    if not found:
        defaults = {"slack": settings.slack.default_channel, "feishu": settings.feishu.default_chat}
        found = [f"{p}:{defaults[p]}" for p in platforms if defaults.get(p)]
    return list(dict.fromkeys(found))


def _any(patterns: Sequence[str], value: str | None) -> bool:
    return not patterns or (value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns))
