"""Rank services by how much their logs moved from a normal period: the LOGS modality of root-cause analysis.

Lines become templates with drain3 (ids, numbers, uuids, IPs, hex, trace ids and secrets masked first). A normal
period gives, per service, template counts and an error-line rate; a window is scored per service by new
templates, error-rate growth and template-share shifts, as shrunk log-ratios, so chatty services do not dominate.
Pure: it reads iterables of `LogLine` and keeps counts, not lines (one example per template), in bounded memory.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from drain3 import TemplateMiner  # type: ignore[import-untyped]
from drain3.masking import MaskingInstruction  # type: ignore[import-untyped]
from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]

from engines.rca.fusion import score_of
from guard.mask import mask_text

MAX_CHARS = 2_000  # a line is clipped to this before masking and mining (a 1 MB line costs what 2 kB costs)
EXAMPLE_CHARS = 300
MAX_CLUSTERS = 2_000  # drain3 keeps at most this many templates (least recently used evicted)
DEPTH = 4  # drain3 prefix-tree depth: token count, then the first DEPTH - 2 tokens (time mask, level word)
SIM_TH = 0.4  # drain3 default: a line joins a template when at least 40 % of its tokens match it
MAX_SERVICES = 1_000  # services past this are counted under OTHER
MAX_TEMPLATES_PER_SERVICE = 500  # templates past this, per service, are counted under OTHER_TEMPLATE
OTHER = "(other)"
OTHER_TEMPLATE = -1
PRIOR = 1.0  # pseudo-lines added to every count: a template seen a few times moves the score a little
ERROR_WEIGHT = 1.5  # an error template growing (or new) counts this much more than an ordinary one

# Order matters: secrets and long shapes first, then plain numbers.
MASKS: tuple[tuple[str, str], ...] = (
    (
        r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|authorization|auth|cookie|session)"
        r"[\"']?\s*[=:]\s*)(?:bearer\s+|basic\s+)?[^\s,;&\"'}\]]+",
        "SECRET",
    ),
    (r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", "SECRET"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "UUID"),
    (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "TIME"),
    (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "TIME"),
    (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b", "IP"),
    (r"(?i)(?<=TraceID: )\S+|(?<=SpanID: )\S+|(?<=trace_id=)\S+|(?<=span_id=)\S+", "ID"),
    (r"\b0x[0-9a-fA-F]+\b", "HEX"),
    (r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b", "HEX"),
    (r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/_-]*\d)[A-Za-z0-9+/_-]{32,}={0,2}", "TOKEN"),
    (r"(?<![A-Za-z0-9.])[-+]?\d+(?:\.\d+)?(?![A-Za-z0-9])", "NUM"),
)
ERROR_WORDS = re.compile(
    r"\b(?:ERROR|FATAL|SEVERE|CRITICAL|CRIT|WARN|WARNING|PANIC)\b|Exception\b|\w+Error\b|Traceback"
    r"|^\s*at [\w$.<>]+\(|^\s*Caused by\b|^\s*\.\.\. \d+ more"
)


@dataclass(frozen=True)
class LogLine:
    time: float
    service: str
    text: str
    trace_id: str = ""
    span_id: str = ""  # with trace_id, the call that wrote the line (engines/rca/paths.py)


@dataclass(frozen=True)
class LogEvidence:
    service: str
    score: float  # in [0, 1): 1 - exp(-size / 2)
    size: float  # nats: the log-ratio of the template (or the error lines) that moved most (what the fusion adds)
    template: str  # the template that moved most (masked)
    example: str  # one line of that template, masked and clipped
    new_templates: int
    error_lines: int
    baseline_rate: float  # lines per second in the normal period
    observed_rate: float  # lines per second in the window
    note: str


def is_error(text: str) -> bool:
    """An error-looking line: a level word, an exception name, or a stack-trace line."""
    return bool(ERROR_WORDS.search(text[:MAX_CHARS]))


def clean(text: str) -> str:
    """Printable, clipped text: control characters and undecodable junk become spaces."""
    text = text[:MAX_CHARS]
    return "".join(c if c.isprintable() else " " for c in text).strip()


class Templates:
    """A drain3 template miner with masking and a bounded number of templates; ids are drain3 cluster ids."""

    def __init__(self, max_clusters: int = MAX_CLUSTERS, depth: int = DEPTH, sim_th: float = SIM_TH) -> None:
        config = TemplateMinerConfig()
        config.drain_max_clusters = max_clusters
        config.drain_depth = depth
        config.drain_sim_th = sim_th
        config.drain_max_children = 100
        config.masking_instructions = [MaskingInstruction(pattern, name) for pattern, name in MASKS]
        config.parameter_extraction_cache_capacity = 0
        self.max_clusters = max_clusters
        self.miner = TemplateMiner(config=config)

    def mask(self, text: str) -> str:
        """The line as drain3 sees it: cleaned, clipped and masked."""
        return str(self.miner.masker.mask(clean(text)))

    def add(self, line: LogLine) -> int:
        result = self.miner.add_log_message(clean(line.text))
        return int(result["cluster_id"])

    def template(self, template_id: int) -> str:
        cluster = self.miner.drain.id_to_cluster.get(template_id)
        return "" if cluster is None else str(cluster.get_template())

    def __len__(self) -> int:
        return len(self.miner.drain.id_to_cluster)


@dataclass
class ServiceCounts:
    """Counts for one service over one period; one masked example per template."""

    lines: int = 0
    errors: int = 0
    templates: Counter[int] = field(default_factory=Counter)
    error_templates: set[int] = field(default_factory=set)
    examples: dict[int, str] = field(default_factory=dict)


class Period:
    """Counts per service over a stretch of lines, in bounded memory."""

    def __init__(self, templates: Templates, keep_examples: bool = False) -> None:
        self.templates = templates
        self.keep_examples = keep_examples
        self.services: dict[str, ServiceCounts] = {}
        self.first = math.inf
        self.last = -math.inf

    def add(self, line: LogLine) -> None:
        if not line.text or not line.text.strip():
            return
        counts = self._counts(line.service or OTHER)
        template_id = self.templates.add(line)
        if template_id not in counts.templates and len(counts.templates) >= MAX_TEMPLATES_PER_SERVICE:
            template_id = OTHER_TEMPLATE
        counts.lines += 1
        counts.templates[template_id] += 1
        if is_error(line.text):
            counts.errors += 1
            counts.error_templates.add(template_id)
        if self.keep_examples and template_id not in counts.examples:
            counts.examples[template_id] = safe(self.templates.mask(line.text))
        if math.isfinite(line.time):
            self.first = min(self.first, line.time)
            self.last = max(self.last, line.time)

    def _counts(self, service: str) -> ServiceCounts:
        if service not in self.services and len(self.services) >= MAX_SERVICES:
            service = OTHER
        return self.services.setdefault(service[:200], ServiceCounts())

    @property
    def lines(self) -> int:
        return sum(c.lines for c in self.services.values())

    @property
    def seconds(self) -> float:
        return max(1.0, self.last - self.first) if self.last >= self.first else 1.0


class LogBaseline(Period):
    """The normal period: per service, template counts, the set of known templates and the error-line rate."""

    @classmethod
    def from_lines(cls, lines: Iterable[LogLine], templates: Templates) -> LogBaseline:
        baseline = cls(templates)
        for line in lines:
            baseline.add(line)
        return baseline

    def known(self, service: str) -> set[int]:
        counts = self.services.get(service)
        return set() if counts is None else set(counts.templates)

    def error_rate(self, service: str) -> float:
        counts = self.services.get(service)
        return 0.0 if counts is None or not counts.lines else counts.errors / counts.lines


def safe(text: str) -> str:
    """Clipped to EXAMPLE_CHARS and masked for credentials (drain3 masks ran already on templates' lines)."""
    return mask_text(clean(text)[:EXAMPLE_CHARS])[:EXAMPLE_CHARS]


def shift(observed: float, expected: float) -> float:
    """Shrunk log-ratio of counts: large only when both the ratio and the counts are."""
    return math.log((observed + PRIOR) / (expected + PRIOR))


@dataclass(frozen=True)
class Move:
    template_id: int
    size: float  # weighted |log-ratio|
    new: bool
    observed: int
    expected: float


def moves(normal: ServiceCounts | None, window: ServiceCounts | None, scale: float) -> list[Move]:
    """Per template of the service, how far its count moved from the normal count scaled to the window.

    A template never seen in the normal period is expected window_lines / (normal_lines + 1) times: little for a
    service that logged much when normal, as many as it has for a service the normal period never saw."""
    before = normal.templates if normal else Counter[int]()
    after = window.templates if window else Counter[int]()
    errors = (normal.error_templates if normal else set()) | (window.error_templates if window else set())
    seen = sum(before.values())
    unseen = sum(after.values()) / (seen + 1)  # rule of succession: lines of a template never seen in `seen`
    out = []
    for template_id in set(before) | set(after):
        expected = before[template_id] * scale if template_id in before else unseen
        observed = after[template_id]
        new = template_id not in before
        size = shift(observed, expected)
        if new:  # a template never seen can only have appeared
            size = max(0.0, size)
        if size > 0 and template_id in errors:
            size *= ERROR_WEIGHT
        elif size < 0 and template_id in errors:
            size = 0.0  # errors that stopped are recovery, not a symptom (a cut code path is paths.py's)
        out.append(Move(template_id, abs(size), new, observed, expected))
    return out


def error_shift(normal: ServiceCounts | None, window: ServiceCounts | None, scale: float) -> float:
    """How much the error lines grew beyond the normal error rate (0 when they did not)."""
    observed = window.errors if window else 0
    expected = (normal.errors if normal else 0) * scale
    return max(0.0, shift(observed, expected)) * ERROR_WEIGHT


def score_services(baseline: LogBaseline, lines: Iterable[LogLine], templates: Templates) -> list[LogEvidence]:
    """Every service seen in the normal period or the window, the most moved first.

    Counts in the normal period are scaled by the ratio of all lines (window / normal), so a window of another
    length or load expects proportionally more or fewer lines of every template."""
    window = Period(templates, keep_examples=True)
    for line in lines:
        window.add(line)
    scale = window.lines / baseline.lines if baseline.lines else 1.0
    out = [_evidence(name, baseline, window, scale) for name in sorted(set(baseline.services) | set(window.services))]
    return sorted(out, key=lambda e: (-e.score, e.service))


def _evidence(name: str, baseline: LogBaseline, window: Period, scale: float) -> LogEvidence:
    normal = baseline.services.get(name)
    now = window.services.get(name)
    found = moves(normal, now, scale)
    top = max(found, key=lambda m: (m.size, m.observed), default=None)
    errors = error_shift(normal, now, scale)
    size = max(top.size if top else 0.0, errors)
    template = ""
    example = ""
    if top is not None:
        template = safe(window.templates.template(top.template_id)) if top.template_id != OTHER_TEMPLATE else ""
        example = now.examples.get(top.template_id, "") if now else ""
    new = sum(1 for m in found if m.new)
    return LogEvidence(
        service=name,
        score=score_of(size),
        size=round(size, 6),
        template=template,
        example=example,
        new_templates=new,
        error_lines=now.errors if now else 0,
        baseline_rate=round((normal.lines if normal else 0) / baseline.seconds, 4),
        observed_rate=round((now.lines if now else 0) / window.seconds, 4),
        note=_note(name, top, new, now.errors if now else 0),
    )


def _note(name: str, top: Move | None, new: int, errors: int) -> str:
    if top is None:
        return f"{name}: no log lines"
    if top.new:
        what = f"new template seen {top.observed}x"
    elif top.observed < top.expected:
        what = f"usual template fell to {top.observed} (expected {top.expected:.0f})"
    else:
        what = f"template rose to {top.observed} (expected {top.expected:.0f})"
    return f"{name}: {what}; {new} new template(s), {errors} error line(s) in the window"
