"""Code paths cut short, seen in log lines grouped into calls, and error lines that only echo a failure below.

A **call** is the lines one service wrote for one span (trace id + span id; the trace id alone when the line names
no span). A **statement** is where in the code a line was written, from the source location the logging library
puts in it (`TravelServiceImpl#469`, `views.py:88`, `main.go:42`): two lines of one statement are the same event
however their values differ, so a list that grew or a date that got filled in does not look like a new event.
Lines without a location or a trace id take no part.

In the normal period, per service, a rule "calls that log at A also log at B" holds when at least RULE_SHARE of
the calls with A had B. In a window, calls that log A and not B break it: an exception thrown between the two
statements, a handler that returns early. A service scores by its most broken rule, as a shrunk log-ratio (nats)
of broken calls against the normal share, like every other modality (engines/rca/fusion.py). Error lines are
not statements here: the log modality scores those.

An error line of a service is an **echo** when it names another service of the system ("No instances available
for ts-basic-service", "connection refused: payments:8080": a report about that service), or when, in the same
trace, a service below it (its span's descendants) failed: an error span, an error line, or a call that broke a
rule. Callers that log their callee's failure as a new error would otherwise outrank the callee whose own lines
merely stopped; echoes are left out of the scoring (and counted in the note). Pure: no I/O; memory bounded by
the caps below.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from engines.rca.logs import MAX_CHARS, OTHER, LogLine, is_error, shift
from engines.rca.spans import Span
from engines.rca.spans import is_error as span_failed

MAX_OPEN_CALLS = 20_000  # calls still being read; the least recently written is folded into the counts
MAX_STATEMENTS = 300  # per service; statements past this take no part
MAX_CALL_STATEMENTS = 64  # per call; a call's further statements take no part
MAX_PAIRS = 500_000  # (a, b) pairs counted over all services; pairs first seen past this are not counted
MAX_SERVICES = 1_000
MAX_WINDOW_CALLS = 200_000
MAX_TRACE_SPANS = 5_000  # spans of one trace looked at for echoes
RULE_SHARE = 0.9  # "A is followed by B" when at least this share of the normal calls with A had B
MIN_CALLS = 5  # normal calls with A needed before a rule about A is made
MIN_NAME = 3  # service names shorter than this are not looked for in error lines
LOCATION = re.compile(
    r"(?<![\w$.])[A-Za-z_$][\w$.]{0,200}(?:#\d{1,6}\b|\.(?:java|kt|scala|py|go|js|ts|rb|cs|php|rs|cc|cpp|c):\d{1,6}\b)"
)

Call = tuple[str, str, str]  # (service, trace id, span id)


def statement(text: str) -> str | None:
    """The source location written in a line, or None."""
    found = LOCATION.search(text[:400])
    return found.group(0) if found else None


def _statement(line: LogLine) -> str | None:
    """The statement of an ordinary line that belongs to a trace; None for any other line."""
    return statement(line.text) if line.trace_id and not is_error(line.text) else None


def _call(line: LogLine) -> Call:
    return line.service, line.trace_id.lower(), line.span_id.lower()


@dataclass
class _Counts:
    calls: Counter[str] = field(default_factory=Counter)  # statement -> calls that had it
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (a, b) -> calls that had both


@dataclass(frozen=True)
class Rule:
    after: str  # statement A
    expected: str  # statement B
    share: float  # normal share of calls with A that had B (rule of succession)


@dataclass(frozen=True)
class PathFinding:
    service: str
    size: float  # nats
    rule: Rule | None
    broken: int  # window calls with A and without B
    calls: int  # window calls with A
    expected: float  # broken calls the normal share predicts
    echoes: int  # error lines left out as echoes of failures below
    note: str


class PathRules:
    """The normal period's rules per service, learned from a stream of lines in bounded memory."""

    def __init__(self) -> None:
        self.counts: dict[str, _Counts] = {}
        self.open: OrderedDict[Call, set[str]] = OrderedDict()
        self.pairs = 0
        self._rules: dict[str, list[Rule]] | None = None

    @classmethod
    def learn(cls, lines: Iterable[LogLine]) -> PathRules:
        rules = cls()
        for line in lines:
            rules.add(line)
        return rules

    def add(self, line: LogLine) -> None:
        """One line of the normal period."""
        where = _statement(line)
        if where is None:
            return
        key = _call(line)
        events = self.open.get(key)
        if events is None:
            if len(self.open) >= MAX_OPEN_CALLS:
                self._fold(*self.open.popitem(last=False))
            events = self.open[key] = set()
        else:
            self.open.move_to_end(key)
        if len(events) < MAX_CALL_STATEMENTS:
            events.add(where)
        self._rules = None

    def _fold(self, key: Call, events: set[str]) -> None:
        counts = self.counts.get(key[0])
        if counts is None:
            if len(self.counts) >= MAX_SERVICES:
                return
            counts = self.counts[key[0]] = _Counts()
        known = [e for e in events if e in counts.calls or len(counts.calls) < MAX_STATEMENTS]
        for a in known:
            counts.calls[a] += 1
            for b in known:
                if a != b and ((a, b) in counts.pairs or self.pairs < MAX_PAIRS):
                    self.pairs += (a, b) not in counts.pairs
                    counts.pairs[a, b] += 1

    def rules(self) -> dict[str, list[Rule]]:
        """Per service, the rules that held in the normal period."""
        if self._rules is None:
            while self.open:
                self._fold(*self.open.popitem(last=False))
            self._rules = {}
            for service, counts in self.counts.items():
                found = []
                for (a, b), both in counts.pairs.items():
                    share = (both + 0.5) / (counts.calls[a] + 1)
                    if counts.calls[a] >= MIN_CALLS and share >= RULE_SHARE:
                        found.append(Rule(a, b, share))
                self._rules[service] = sorted(found, key=lambda r: (r.after, r.expected))
        return self._rules

    def services(self) -> set[str]:
        return set(self.rules())

    def by_statement(self, service: str) -> dict[str, list[Rule]]:
        """The service's rules by their statement A: what a call with A must also have."""
        index: dict[str, list[Rule]] = {}
        for rule in self.rules().get(service, ()):
            index.setdefault(rule.after, []).append(rule)
        return index


def window_calls(lines: Iterable[LogLine]) -> dict[Call, set[str]]:
    """The window's calls and their statements (error lines left out), at most MAX_WINDOW_CALLS."""
    calls: dict[Call, set[str]] = {}
    for line in lines:
        where = _statement(line)
        if where is None:
            continue
        key = _call(line)
        events = calls.get(key)
        if events is None:
            if len(calls) >= MAX_WINDOW_CALLS:
                continue
            events = calls[key] = set()
        if len(events) < MAX_CALL_STATEMENTS:
            events.add(where)
    return calls


def _indexes(rules: PathRules, calls: dict[Call, set[str]]) -> dict[str, dict[str, list[Rule]]]:
    """`PathRules.by_statement` for every service with calls, built once per window."""
    return {service: rules.by_statement(service) for service in {key[0] for key in calls}}


def broken_calls(rules: PathRules, calls: dict[Call, set[str]]) -> set[Call]:
    """The window's calls that break a rule of their service."""
    indexes = _indexes(rules, calls)
    return {
        key
        for key, events in calls.items()
        if any(rule.expected not in events for a in events for rule in indexes[key[0]].get(a, ()))
    }


def score(rules: PathRules, calls: dict[Call, set[str]], echoes: Counter[str] | None = None) -> dict[str, PathFinding]:
    """Per service (of the normal period or the window), its most broken rule."""
    indexes = _indexes(rules, calls)
    applied: Counter[Rule] = Counter()  # window calls with the rule's A
    broke: Counter[Rule] = Counter()  # ... and without its B
    for (service, _, _), events in calls.items():
        for a in events:
            for each in indexes[service].get(a, ()):
                applied[each] += 1
                broke[each] += each.expected not in events
    echoes = echoes or Counter()
    out = {}
    for service in sorted(set(rules.services()) | set(indexes) | set(echoes)):
        best: tuple[float, Rule | None, int, int, float] = (0.0, None, 0, 0, 0.0)
        for candidate in rules.rules().get(service, ()):
            expected = (1.0 - candidate.share) * applied[candidate]
            size = shift(broke[candidate], expected)
            if size > best[0]:
                best = (size, candidate, broke[candidate], applied[candidate], expected)
        size, rule, broken, total, expected = best
        out[service] = PathFinding(service, round(size, 6), rule, broken, total, expected, echoes[service],
                                   _note(service, rule, broken, total, expected, echoes[service]))  # fmt: skip
    return out


def _note(service: str, rule: Rule | None, broken: int, total: int, expected: float, echoes: int) -> str:
    if rule is None:
        note = f"{service}: no call left its usual code path"
    else:
        note = (
            f"{service}: {broken} of {total} calls that logged at {rule.after} did not log at {rule.expected} "
            f"(normally about {expected:.0f}): a code path cut short"
        )
    if echoes:
        note += f"; {echoes} error line(s) left out as echoes of failures below it in the same traces"
    return note


def echo_lines(
    lines: Sequence[LogLine], spans: Sequence[Span], broken: set[Call], services: Iterable[str] = ()
) -> tuple[list[LogLine], Counter[str]]:
    """`lines` without the error lines that echo a failure elsewhere; and, per service, how many were left out.
    An error line is an echo when it names another of `services` (the caller's report about it: "No instances
    available for ts-basic-service", "connection refused: payments:8080"), or when a service below it in the
    same trace failed: an error span, an error line, or a call in `broken`."""
    named = _names(services)
    by_trace: dict[str, list[Span]] = {}
    for span in spans:
        group = by_trace.setdefault(span.trace_id.lower(), [])
        if len(group) < MAX_TRACE_SPANS:
            group.append(span)
    failed: dict[str, set[str]] = {}
    for span in spans:
        if span_failed(span):
            failed.setdefault(span.trace_id.lower(), set()).add(span.service)
    errors = [is_error(line.text) for line in lines]
    for line, error in zip(lines, errors, strict=True):
        if error and line.trace_id:
            failed.setdefault(line.trace_id.lower(), set()).add(line.service)
    for service, trace, _ in broken:
        failed.setdefault(trace, set()).add(service)
    below: dict[tuple[str, str], set[str]] = {}
    kept: list[LogLine] = []
    left_out: Counter[str] = Counter()
    for line, error in zip(lines, errors, strict=True):
        if error and _names_another(named, line):
            left_out[line.service] += 1
            continue
        trace = line.trace_id.lower()
        if error and trace and len(failed.get(trace, ())) > 1:
            key = (trace, line.service)
            if key not in below:
                below[key] = _services_below(by_trace.get(trace, []), line.service)
            if below[key] & (failed[trace] - {line.service}):
                left_out[line.service] += 1
                continue
        kept.append(line)
    return kept, left_out


def _names(services: Iterable[str]) -> re.Pattern[str] | None:
    """A pattern for any of the service names as a whole word (names of 3 characters or more; the longest first,
    so "ts-order-other-service" is not read as "ts-order")."""
    names = sorted({s for s in services if len(s) >= MIN_NAME and s != OTHER}, key=lambda s: (-len(s), s))
    if not names:
        return None
    alternatives = "|".join(re.escape(name) for name in names[:MAX_SERVICES])
    return re.compile(rf"(?<![\w.-])(?:{alternatives})(?![\w-])")


def _names_another(named: re.Pattern[str] | None, line: LogLine) -> bool:
    return named is not None and any(m.group(0) != line.service for m in named.finditer(line.text[:MAX_CHARS]))


def _services_below(spans: list[Span], service: str) -> set[str]:
    """Services with a span that has a span of `service` among its ancestors (in one trace)."""
    parent = {s.span_id.lower(): (s.parent_id or "").lower() for s in spans}
    owner = {s.span_id.lower(): s.service for s in spans}
    out = set()
    for s in spans:
        if s.service == service or s.service in out:
            continue
        step, hops = (s.parent_id or "").lower(), 0
        while step in owner and hops < len(spans):
            if owner[step] == service:
                out.add(s.service)
                break
            step, hops = parent[step], hops + 1
    return out
