"""The written policy that decides what the event pipeline may fix on its own: rules that allow named actions for
named findings in named places, maintenance windows in which nothing is automatic, a rate limit and a circuit
breaker. Everything a rule does not explicitly allow waits for a person. Pure: no I/O, no clock (callers pass
Unix seconds), so every decision is reproducible from its inputs.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from engines.incidents.model import explain
from errors import InvalidInput, quote
from guard import yamlsafe
from settings import LimitSettings

Action = Literal[
    "set_probe", "set_resources", "set_image", "scale", "restart", "set_template", "cordon", "set_target_port",
    "set_fields",
]  # fmt: skip
ACTIONS: tuple[str, ...] = get_args(Action)
ChangeKind = Literal["rollout", "config", "secret", "istio", "scale", "any"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = get_args(Day)
MaxRisk = Literal["low", "medium", "high"]
RISK_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2}  # any other risk (critical) always waits for a person

MAX_POLICY_BYTES = 256 * 1024
MAX_ENTRIES = 200  # rules, and maintenance windows
MAX_ITEMS = 100  # findings, actions, namespaces, clusters, days of one rule or window
HOUR = 3600.0

_NAME = re.compile(r"[a-z0-9-]{1,64}")
_CODE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{quote(value)} is not a valid name: use 1-64 characters of a-z, 0-9 and -")
    return value


def _code(value: str) -> str:
    if value != "*" and not (len(value) <= 64 and _CODE.fullmatch(value)):
        raise ValueError(f"{quote(value)} is not a finding code: write it in upper snake case (POD_IMAGE_PULL) or '*'")
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError('YAML read this time as a number; quote it, e.g. "12:30"')
    if isinstance(value, str):
        m = _TIME.fullmatch(value.strip())
        if not m or int(m[1]) > 23 or int(m[2]) > 59:
            raise ValueError(f"{quote(value)} is not a time of day: write HH:MM in UTC, 00:00 to 23:59")
        return f"{int(m[1]):02d}:{m[2]}"
    return value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Name = Annotated[str, AfterValidator(_name)]
Code = Annotated[str, AfterValidator(_code)]
Glob = Annotated[str, Field(min_length=1, max_length=253)]
Time = Annotated[str, BeforeValidator(_time)]
Instant = Annotated[datetime, AfterValidator(_utc)]
Globs = Annotated[list[Glob], Field(min_length=1, max_length=MAX_ITEMS)]


class Rule(BaseModel):
    """What may be fixed automatically, and where. The first rule that matches an incident decides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(description="Names the rule in decisions and the audit log: 1-64 characters of a-z, 0-9, -.")
    findings: list[Code] = Field(
        min_length=1, max_length=MAX_ITEMS, description="Finding codes (upper snake case) it covers; '*' for any."
    )
    actions: list[Action] = Field(
        min_length=1, max_length=MAX_ITEMS, description="The actions it allows: every action of a plan must be one."
    )
    namespaces: Globs = Field(default_factory=lambda: ["*"], description="fnmatch globs of the namespaces it covers.")
    clusters: Globs = Field(default_factory=lambda: ["*"], description="fnmatch globs of the clusters it covers.")
    after_change: ChangeKind | None = Field(
        None, description="Only when a change of this kind (or 'any') preceded the incident."
    )
    within_minutes: int = Field(30, ge=1, le=1440, description="With after_change: how recent that change must be.")
    max_risk: Annotated[MaxRisk, BeforeValidator(_lower)] = Field(
        "medium", description="Plans of a higher risk wait for a person; critical ones always do."
    )

    @model_validator(mode="after")
    def _within_needs_after_change(self) -> Rule:
        if "within_minutes" in self.model_fields_set and self.after_change is None:
            raise ValueError("within_minutes only applies with after_change; add after_change or remove it")
        return self

    def covers(self, cluster: str, namespace: str | None, findings: Collection[str]) -> list[str]:
        """The incident's findings this rule covers in this place (empty: it does not apply)."""
        if not (_matches(self.clusters, cluster) and _matches(self.namespaces, namespace or "")):
            return []
        return [f for f in findings if "*" in self.findings or f in self.findings]


class Window(BaseModel):
    """A maintenance window: daily (days, start, end; UTC) or absolute (from, until)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(description="Names the window in decisions: 1-64 characters of a-z, 0-9, -.")
    days: list[Annotated[Day, BeforeValidator(_lower)]] = Field(
        default_factory=lambda: list(DAYS), min_length=1, max_length=7, description="Days it starts on (mon..sun)."
    )
    start: Time | None = Field(None, description="HH:MM UTC.")
    end: Time | None = Field(None, description="HH:MM UTC; before start: crosses midnight; equal: the whole day.")
    from_: Instant | None = Field(None, alias="from", description="Absolute start (an ISO datetime, UTC if no zone).")
    until: Instant | None = Field(None, description="Absolute end (exclusive).")
    clusters: Globs = Field(default_factory=lambda: ["*"], description="fnmatch globs of the clusters it covers.")
    namespaces: Globs = Field(default_factory=lambda: ["*"], description="fnmatch globs of the namespaces it covers.")

    @model_validator(mode="after")
    def _one_kind(self) -> Window:
        daily = self.start is not None or self.end is not None
        absolute = self.from_ is not None or self.until is not None
        if daily and absolute:
            raise ValueError("a window has either start/end (daily) or from/until (absolute), not both")
        if absolute:
            if self.from_ is None or self.until is None:
                raise ValueError("an absolute window needs both from and until")
            if "days" in self.model_fields_set:
                raise ValueError("days only apply to a daily window (start/end)")
            if self.until <= self.from_:
                raise ValueError("until must be after from")
        elif self.start is None or self.end is None:
            raise ValueError('a window needs start and end ("02:00", "04:30" UTC) or from and until (datetimes)')
        return self

    def covers(self, cluster: str, namespace: str | None, at: float) -> bool:
        """Whether the window is open at `at` (Unix seconds) for this cluster and namespace."""
        if not (_matches(self.clusters, cluster) and _matches(self.namespaces, namespace or "")):
            return False
        when = datetime.fromtimestamp(at, tz=UTC)
        if self.from_ is not None and self.until is not None:
            return self.from_ <= when < self.until
        return self._daily(when)

    def _daily(self, when: datetime) -> bool:
        assert self.start is not None and self.end is not None
        start, end, now = _minutes(self.start), _minutes(self.end), when.hour * 60 + when.minute
        today, yesterday = DAYS[when.weekday()], DAYS[(when - timedelta(days=1)).weekday()]
        if start < end:
            return today in self.days and start <= now < end
        # crosses midnight (or the whole day when equal): the part after midnight belongs to the day it started
        return (today in self.days and now >= start) or (yesterday in self.days and now < end)


class Limits(BaseModel):
    """How much the policy may do on its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_hour: int = Field(5, ge=0, le=1000, description="Automatic fixes per rolling hour, all rules together.")
    failures_before_stop: int = Field(
        3, ge=1, le=100, description="Failed automatic fixes in a row that open the circuit breaker."
    )


class Policy(BaseModel):
    """The operator's policy for automatic fixes. Anything no rule allows waits for a person. For example::

    dry_run: false
    rules:
      - name: roll-back-bad-images
        findings: [POD_IMAGE_NOT_FOUND, POD_IMAGE_PULL]
        actions: [set_template]
        namespaces: ["shop", "team-*"]
        after_change: rollout
        within_minutes: 30
        max_risk: medium
    maintenance:
      - name: saturday-upgrades
        days: [sat, sun]
        start: "02:00"
        end: "04:30"
      - name: holidays
        from: 2026-12-24T00:00:00Z
        until: 2026-12-26T00:00:00Z
    limits:
      per_hour: 5
      failures_before_stop: 3
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dry_run: bool = Field(False, description="Never act: report what would have been done; a person decides.")
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_ENTRIES, description="First match wins.")
    maintenance: list[Window] = Field(
        default_factory=list, max_length=MAX_ENTRIES, description="When nothing is done automatically."
    )
    limits: Limits = Field(default_factory=Limits, description="The rate limit and the circuit breaker.")

    @model_validator(mode="after")
    def _unique_names(self) -> Policy:
        sections = {"rules": [r.name for r in self.rules], "maintenance": [w.name for w in self.maintenance]}
        for section, names in sections.items():
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{section} names must be unique; repeated: {', '.join(twice)}")
        return self

    def maintenance_at(self, cluster: str, namespace: str | None, at: float) -> str | None:
        """The name of the maintenance window covering this cluster and namespace at `at`, else None."""
        return next((w.name for w in self.maintenance if w.covers(cluster, namespace, at)), None)


def load_policy(text: str, source: str = "policy") -> Policy:
    """The policy written in YAML `text`; `source` names it in errors (a file path).

    An empty document is the empty policy: nothing is automatic.

    Raises:
        InvalidInput: too large, not YAML, not a mapping, or a field wrong (the message names its path).
    """
    size = len(text.encode("utf-8", "replace"))
    if size > MAX_POLICY_BYTES:
        raise InvalidInput(
            f"The autofix policy {source} is {size} bytes, more than {MAX_POLICY_BYTES // 1024} KB.",
            hint=f"Keep it to at most {MAX_ENTRIES} rules and {MAX_ENTRIES} maintenance windows; use globs.",
        )
    try:  # bounded: no alias bombs, no deep nesting
        documents = yamlsafe.load_all(text, LimitSettings(), f"autofix policy {source}", MAX_POLICY_BYTES)
    except InvalidInput as e:
        raise InvalidInput(
            e.message, hint='Check indentation and quoting there; quote times ("02:00") and globs ("*").'
        ) from None
    if len(documents) > 1:
        raise InvalidInput(f"The autofix policy {source} holds {len(documents)} YAML documents; write one.")
    data = documents[0] if documents and documents[0] is not None else {}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"The autofix policy {source} must be a mapping at the top level, not a {type(data).__name__}.",
            hint="Write it as keys: dry_run, rules, maintenance, limits (each rule is an item of rules).",
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(f"The autofix policy {source} is invalid: {explain(e)}.", hint=_hint(e)) from None


_SECTIONS: dict[str, type[BaseModel]] = {"rules": Rule, "maintenance": Window, "limits": Limits}
_FIELD_HINTS = {
    "actions": f"Allowed actions: {', '.join(ACTIONS)}.",
    "max_risk": "max_risk is low, medium or high; critical plans always wait for a person.",
    "after_change": "after_change is one of rollout, config, secret, istio, scale or any.",
    "start": 'Times are HH:MM in UTC, quoted ("02:00"); an end before the start crosses midnight.',
    "end": 'Times are HH:MM in UTC, quoted ("02:00"); an end before the start crosses midnight.',
    "days": f"Days are {', '.join(DAYS)}.",
    "findings": "Finding codes are upper snake case, e.g. POD_IMAGE_PULL; '*' matches any.",
    "rules": f"A rule needs name, findings and actions (namespaces, clusters, after_change, within_minutes, max_risk "
    f"are optional); at most {MAX_ENTRIES} rules: use globs and several findings per rule.",
    "maintenance": f"A window has a name and either days/start/end (daily, UTC) or from/until (datetimes); at most "
    f"{MAX_ENTRIES} windows.",
    "limits": "limits has per_hour (0..1000) and failures_before_stop (1..100).",
}


def _hint(error: ValidationError) -> str:
    """What to write instead: the allowed fields where an unknown one is (a typo is also a missing field), else the
    allowed values of the first wrong field."""
    errors = error.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "extra_forbidden":
        model: type[BaseModel] = _SECTIONS.get(loc[0], Policy) if len(loc) > 1 else Policy
        fields = [f.alias or n for n, f in model.model_fields.items()]
        close = difflib.get_close_matches(loc[-1], fields, n=1)
        where = {Rule: "A rule", Window: "A maintenance window", Limits: "limits"}.get(model, "The policy")
        return f"{where} has the fields {', '.join(fields)}" + (f"; did you mean {close[0]}?" if close else ".")
    for part in reversed(loc):
        if part in _FIELD_HINTS:
            return _FIELD_HINTS[part]
    return "Compare with the example policy in the docstring of engines.incidents.policy.Policy."


def _matches(globs: Iterable[str], value: str) -> bool:
    return any(fnmatchcase(value, g) for g in globs)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


Verdict = Literal["auto", "dry_run", "ask", "hold"]


@dataclass(frozen=True)
class Decision:
    """What the policy says about one fix plan.

    Attributes:
        verdict: auto: approve as the policy; dry_run: say what would be done, a person decides; ask: a person
            decides; hold: a maintenance window is open, nothing is automatic.
        rule: The rule that matched (for auto and dry_run).
        reason: One sentence for the incident timeline: what allowed it, or why it is not automatic.
    """

    verdict: Verdict
    rule: str | None
    reason: str


class HourlyLimit:
    """At most `per_hour` starts in any rolling hour; it keeps only the last `per_hour` start times."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self.starts: deque[float] = deque(maxlen=max(per_hour, 1))

    def full(self, at: float) -> bool:
        """Whether the hour before `at` (Unix seconds) already holds `per_hour` starts."""
        return sum(1 for t in self.starts if at - t < HOUR) >= self.per_hour

    def add(self, at: float) -> None:
        self.starts.append(at)


class Autofix:
    """The policy plus its running state: the rate limit and the circuit breaker."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.limit = HourlyLimit(policy.limits.per_hour)
        self._failures = 0
        self._open = False

    @property
    def breaker_open(self) -> bool:
        """Too many automatic fixes in a row failed: nothing is automatic until an operator calls `reset`."""
        return self._open

    def decide(
        self,
        *,
        cluster: str,
        namespace: str | None,
        findings: Collection[str],
        actions: Collection[str],
        risk: str,
        changes: Collection[tuple[str, float]],
        at: float,
    ) -> Decision:
        """Whether a fix plan may be approved automatically. No side effects: call `started` when acting.

        Args:
            cluster, namespace: Where the incident is (namespace None: cluster-scoped; only '*' globs match it).
            findings: The diagnosis's finding codes; a rule applies when it covers any of them.
            actions: The plan's actions; a rule applies only when it allows all of them.
            risk: The plan's risk (low, medium, high, critical).
            changes: (kind, seconds before the incident) of the changes that preceded it.
            at: Now, Unix seconds.
        """
        window = self.policy.maintenance_at(cluster, namespace, at)
        if window:
            return Decision("hold", None, f"maintenance window {window} is open in {_place(cluster, namespace)}")
        if not actions:
            return _ask("the plan has no actions to approve")
        rule, covered, refusal = self._match(cluster, namespace, findings, actions)
        if rule is None:
            return _ask(refusal)
        if RISK_RANK.get(risk, len(RISK_RANK)) > RISK_RANK[rule.max_risk]:
            return _ask(f"risk {risk} is above rule {rule.name}'s max {rule.max_risk}")
        change, refusal = _recent_change(rule, changes)
        if refusal:
            return _ask(refusal)
        if self._open:
            stop = self.policy.limits.failures_before_stop
            return _ask(f"circuit breaker open after {stop} failed automatic fixes in a row; an operator must reset it")
        if self.limit.full(at):
            return _ask(f"rate limit {self.policy.limits.per_hour}/h reached")
        where = _place(cluster, namespace)
        allows = f"rule {rule.name} allows {_list(sorted(set(actions)))} for {_list(covered)} in {where}{change}"
        if self.policy.dry_run:
            return Decision("dry_run", rule.name, f"dry run, a person decides: {allows}")
        return Decision("auto", rule.name, allows)

    def started(self, at: float) -> None:
        """An automatic fix began at `at` (Unix seconds): it counts toward the hourly limit."""
        self.limit.add(at)

    def finished(self, ok: bool) -> None:
        """An automatic fix's outcome: a success ends the failure streak; enough failures open the breaker."""
        if ok:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self.policy.limits.failures_before_stop:
            self._open = True

    def reset(self) -> None:
        """An operator closes the circuit breaker."""
        self._failures = 0
        self._open = False

    def _match(
        self, cluster: str, namespace: str | None, findings: Collection[str], actions: Collection[str]
    ) -> tuple[Rule | None, list[str], str]:
        """The first rule covering a finding here that allows every action; else why none does."""
        first_refusal = ""
        for rule in self.policy.rules:
            covered = rule.covers(cluster, namespace, findings)
            if not covered:
                continue
            refused = sorted(a for a in set(actions) if a not in rule.actions)
            if not refused:
                return rule, covered, ""
            first_refusal = first_refusal or f"action {_list(refused)} not allowed by rule {rule.name}"
        if first_refusal:
            return None, [], first_refusal
        if not findings:
            return None, [], "no rule matches: the diagnosis gave no finding codes"
        return None, [], f"no rule matches finding {_list(sorted(set(findings)))} in {_place(cluster, namespace)}"


def _recent_change(rule: Rule, changes: Collection[tuple[str, float]]) -> tuple[str, str]:
    """(" after a rollout 2 min before", "") when the rule's change precondition holds, else ("", why not)."""
    if rule.after_change is None:
        return "", ""
    kind = rule.after_change
    ago = sorted(s for k, s in changes if (kind == "any" or k == kind) and s >= 0)
    label = "change" if kind == "any" else kind
    if ago and ago[0] <= rule.within_minutes * 60:
        return f" after a {label} {_ago(ago[0])} before", ""
    if ago:
        return "", f"no {label} in the {rule.within_minutes} min before (the last was {_ago(ago[0])} before)"
    return "", f"no {label} in the {rule.within_minutes} min before"


def _ask(reason: str) -> Decision:
    return Decision("ask", None, reason)


def _place(cluster: str, namespace: str | None) -> str:
    return namespace if namespace else f"cluster {cluster}"


def _ago(seconds: float) -> str:
    return f"{int(seconds)} s" if seconds < 60 else f"{round(seconds / 60)} min"


def _list(items: Iterable[str], most: int = 5) -> str:
    items = list(items)
    shown = ", ".join(i if len(i) <= 64 else i[:64] + "…" for i in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
