"""Coverage of what Kubernetes reports: every event reason the kubelet, the controllers, the scheduler, the
volume plugins and the admission plugins of Kubernetes v1.35.8 emit, mapped to the finding code that covers it.

Reads the k8s.io/kubernetes source that `scripts/build-control-plane.sh` fetched into the Go module cache
(`go env GOMODCACHE`), finds every event call (`EventType{Warning,Normal}` followed by its reason, in both
event APIs) and resolves the reason constants. A reason is:
  - covered, when a rule in engines/diagnosis reads it (its literal is in the rule's source) or
    `benchmarks/coverage_kubernetes.tsv` maps it to a code that exists;
  - excluded, with the one-line reason written in that file, or "not a problem" for a Normal event (progress);
  - a gap otherwise. Gaps are listed, not hidden.

    .venv/bin/python benchmarks/coverage.py            # print the table
    .venv/bin/python benchmarks/coverage.py --write    # write benchmarks/coverage.md
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engines.diagnosis.codes import CODES  # noqa: E402

VERSION = "v1.35.8"
TREES = ("pkg/kubelet", "pkg/controller", "pkg/scheduler", "pkg/volume", "plugin/pkg/admission")
MAPPING = ROOT / "benchmarks" / "coverage_kubernetes.tsv"
ISTIO = ROOT / "benchmarks" / "coverage_istio.tsv"
ISTIO_TITLE = "2. istioctl analyze message codes"
K8SGPT = ROOT / "benchmarks" / "coverage_k8sgpt.tsv"
K8SGPT_TITLE = "3. k8sgpt analyzers"
OUT = ROOT / "benchmarks" / "coverage.md"
CALL = re.compile(r"EventType(Warning|Normal)\s*,\s*([A-Za-z_][\w.]*|\"[^\"]+\")\s*,")
CONST = re.compile(r"^\s*(\w+)\s*(?:string\s*)?=\s*\"([A-Z][A-Za-z0-9]+)\"", re.M)
EXCLUDED = ("not a problem", "not applicable")


@dataclass
class Reason:
    name: str
    types: set[str] = field(default_factory=set)
    components: set[str] = field(default_factory=set)


def source_tree() -> Path:
    cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    tree = Path(cache) / "k8s.io" / f"kubernetes@{VERSION}"
    if not tree.is_dir():
        sys.exit(f"{tree} is missing: run scripts/build-control-plane.sh first")
    return tree


def component(relative: str) -> str:
    parts = relative.split("/")
    if parts[1] == "controller":
        return f"controller/{parts[2]}" if len(parts) > 3 else "controllers (shared)"
    return {"kubelet": "kubelet", "scheduler": "scheduler", "volume": "volume plugins"}.get(parts[1], "admission")


def reasons(tree: Path) -> tuple[dict[str, Reason], list[str]]:
    """Reason → where it is emitted; and the calls whose reason is not a constant (listed as dynamic)."""
    files = [p for t in TREES for p in (tree / t).rglob("*.go") if not p.name.endswith("_test.go")]
    constants: dict[str, str] = {}
    texts = {}
    for path in files:
        text = path.read_text(errors="replace")
        texts[path] = text
        constants.update(CONST.findall(text))
    found: dict[str, Reason] = {}
    dynamic = []
    for path, text in texts.items():
        relative = str(path.relative_to(tree))
        for kind, expr in CALL.findall(text):
            name = expr.strip('"') if expr.startswith('"') else constants.get(expr.rsplit(".", 1)[-1])
            if name is None:
                dynamic.append(f"{relative}: {expr}")
                continue
            reason = found.setdefault(name, Reason(name))
            reason.types.add(kind)
            reason.components.add(component(relative))
    return found, sorted(set(dynamic))


def read_rules() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "engines" / "diagnosis").glob("*.py")))


def read_mapping() -> dict[str, str]:
    if not MAPPING.exists():
        return {}
    with MAPPING.open(newline="") as f:
        return {row[0]: row[1] for row in csv.reader(f, delimiter="\t") if row and not row[0].startswith("#")}


def classify(reason: Reason, rules: str, mapping: dict[str, str]) -> tuple[str, str]:
    """(status, what): covered → the code(s); excluded → why; gap → ''."""
    given = mapping.get(reason.name, "")
    if given and not given.startswith(EXCLUDED):
        return "covered", given
    if given:
        return "excluded", given
    if f'"{reason.name}"' in rules:
        return "covered", "read by a rule"
    if reason.types == {"Normal"}:
        return "excluded", "not a problem: a Normal event records progress"
    return "gap", ""


@dataclass
class Table:
    title: str
    source: str
    columns: list[str]  # the key columns; "status" and "finding code or why not" follow
    rows: list[tuple[list[str], str, str]]  # (key cells, status, code or why)
    key: int = 0  # which key cell names the row in the finding-code table

    def counts(self) -> str:
        n = defaultdict(int, {status: 0 for status in ("covered", "excluded", "gap")})
        for _, status, _ in self.rows:
            n[status] += 1
        return f"{len(self.rows)} rows: {n['covered']} covered, {n['excluded']} excluded, {n['gap']} gaps"


def kubernetes_table(found: dict[str, Reason], dynamic: list[str], mapping: dict[str, str]) -> Table:
    rules = read_rules()
    rows = []
    for reason in sorted(found.values(), key=lambda r: r.name):
        status, what = classify(reason, rules, mapping)
        rows.append(([reason.name, "/".join(sorted(reason.types)), ", ".join(sorted(reason.components))], status, what))
    source = (
        f"k8s.io/kubernetes@{VERSION} ({', '.join(TREES)}): the reason of every event call. "
        f"{len(dynamic)} calls pass a reason held in a variable: {'; '.join(f'`{d}`' for d in dynamic)}."
    )
    return Table(f"1. Kubernetes {VERSION} event reasons", source, ["reason", "type", "emitted by"], rows)


def tsv_table(path: Path, title: str, columns: list[str]) -> Table | None:
    """A table read from a checked-in TSV: a `# source: ...` line, then the key columns and the mapping."""
    if not path.exists():
        return None
    lines = path.read_text().splitlines()
    source = next((line[len("# source:") :].strip() for line in lines if line.startswith("# source:")), "")
    rows = []
    for cells in csv.reader((line for line in lines if line and not line.startswith("#")), delimiter="\t"):
        *key, mapping = cells
        status = "gap" if mapping == "gap" else "excluded" if mapping.startswith(EXCLUDED) else "covered"
        rows.append((key, status, "" if mapping == "gap" else mapping))
    return Table(title, source, columns, rows)


def check(tables: list[Table]) -> list[str]:
    """Rows whose mapping names a code that does not exist."""
    return [
        f"{table.title}: {' / '.join(key)} -> {what}"
        for table in tables
        for key, status, what in table.rows
        if status == "covered" and what != "read by a rule"
        for code in what.split(", ")
        if code not in CODES
    ]


def render(tables: list[Table]) -> str:
    lines = ["# Diagnosis coverage", "", "Generated by `benchmarks/coverage.py --write`; do not edit by hand.", ""]
    lines += [f"- **{t.title}**: {t.counts()}" for t in tables]
    lines += [
        "",
        "A row is *covered* when a finding code reports it (or a rule reads the reason itself), *excluded* with the "
        "reason it is not a problem or does not apply to what CloudPilot reads, and a *gap* otherwise.",
    ]
    by_code: dict[str, list[str]] = defaultdict(list)
    for t in tables:
        lines += ["", f"## {t.title}", "", f"Source: {t.source}", ""]
        lines += ["| " + " | ".join([*t.columns, "status", "finding code or why not"]) + " |"]
        lines += ["|" + "---|" * (len(t.columns) + 2)]
        for key, status, what in t.rows:
            lines.append("| " + " | ".join([*key, status, what]) + " |")
            for code in what.split(", ") if status == "covered" else []:
                if code in CODES:
                    by_code[code].append(key[t.key])
    lines += [
        "",
        "## Finding codes",
        "",
        f"Every code of `engines/diagnosis/codes.py` ({len(CODES)}), with the rows above mapped to it.",
        "",
        "| code | meaning | rows mapped to it |",
        "|---|---|---|",
    ]
    lines += [f"| {code} | {meaning} | {', '.join(by_code[code])} |" for code, meaning in CODES.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    found, dynamic = reasons(source_tree())
    tables = [kubernetes_table(found, dynamic, read_mapping())]
    tables += [t for t in (tsv_table(ISTIO, ISTIO_TITLE, ["code", "name", "level"]),
                           tsv_table(K8SGPT, K8SGPT_TITLE, ["analyzer", "condition"])) if t]  # fmt: skip
    wrong = check(tables)
    if wrong:
        sys.exit("rows name codes that do not exist:\n" + "\n".join(wrong))
    text = render(tables)
    if args.write:
        OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
