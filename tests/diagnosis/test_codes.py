"""The finding-code registry (engines/diagnosis/codes.py) is complete and has no dead entries: every code a
rule can report is listed, and every listed code is reported by some rule."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from engines.diagnosis.codes import CODES

RULES = Path(__file__).resolve().parents[2] / "engines" / "diagnosis"
CODE = re.compile(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+|IST\d{4}")
NOT_CODES = {"ISTIO_MUTUAL", "OPTIONAL_MUTUAL"}  # Istio TLS modes the rules compare against


def literals() -> dict[str, str]:
    """Code-shaped string literals in the rule modules → the module holding the first one."""
    found: dict[str, str] = {}
    for path in sorted(RULES.glob("*.py")):
        if path.name == "codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE.fullmatch(node.value):
                found.setdefault(node.value, path.name)
    return {code: where for code, where in found.items() if code not in NOT_CODES}


def test_every_code_a_rule_reports_is_registered() -> None:
    missing = {code: where for code, where in literals().items() if code not in CODES}
    assert not missing, f"add these to engines/diagnosis/codes.py (and a coverage row): {missing}"


def test_every_registered_code_is_reported_by_a_rule() -> None:
    dead = set(CODES) - set(literals())
    assert not dead, f"no rule reports {sorted(dead)}: remove them from engines/diagnosis/codes.py"


def test_the_scan_sees_a_new_code() -> None:
    tree = ast.parse('Finding(code="POD_SOMETHING_NEW", severity="warning")')
    seen = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and CODE.fullmatch(str(n.value))]
    assert seen == ["POD_SOMETHING_NEW"] and "POD_SOMETHING_NEW" not in CODES


COVERAGE = Path(__file__).resolve().parents[2] / "benchmarks" / "coverage.md"
MAPPING = Path(__file__).resolve().parents[2] / "benchmarks" / "coverage_kubernetes.tsv"


def table_rows(section: str) -> list[list[str]]:
    """The cells of the markdown table under the heading `section` in benchmarks/coverage.md."""
    text = COVERAGE.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # past the header


def test_the_coverage_table_lists_every_code_and_no_other() -> None:
    listed = [row[0] for row in table_rows("Finding codes")]
    assert sorted(listed) == sorted(CODES), "run: .venv/bin/python benchmarks/coverage.py --write"
    assert {row[0]: row[1] for row in table_rows("Finding codes")} == CODES


def test_every_covered_row_points_to_a_code_that_exists() -> None:
    sections = re.findall(r"^## (\d\. .+)$", COVERAGE.read_text(), re.M)
    assert sections[0].startswith("1. Kubernetes")
    for section in sections:
        rows = table_rows(section)
        assert rows, section
        for *key, status, what in rows:
            assert status in ("covered", "excluded", "gap"), (section, key)
            if status == "covered":
                codes = what.split(", ")
                assert set(codes) <= set(CODES) or what == "read by a rule", f"{section}: {key} → {what}: no such code"
            if status == "excluded":
                assert what.startswith(("not a problem:", "not applicable:")), (section, key)


def test_every_mapped_reason_names_a_code_or_says_why_not() -> None:
    for line in MAPPING.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        reason, what = line.split("\t")
        assert set(what.split(", ")) <= set(CODES) or what.startswith(("not a problem: ", "not applicable: ")), (
            f"{reason}: {what!r}"
        )
