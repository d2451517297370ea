"""Layers point one way: the import-linter contracts in pyproject.toml hold, and so do the rules for the four
single-file modules that import-linter cannot read as importers (it takes packages only)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SINGLE_FILE_MODULES = ("server", "settings", "errors", "runtime")
ABOVE_TOOLS = ("agents", "bots", "notifiers", "server", "cli")  # what neither tools nor infrastructure may import


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(binary), "--no-cache", "--no-logo"], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_import_contracts_hold():
    run = lint_imports(ROOT)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_the_contracts_catch_an_engine_that_imports_a_tool(tmp_path):
    shutil.copytree(ROOT, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*", "__pycache__", "tests"))
    (tmp_path / "engines" / "shortcut.py").write_text("from tools import pods\n")

    run = lint_imports(tmp_path)

    assert run.returncode == 1, run.stdout + run.stderr
    assert "Engines know nothing of tools" in run.stdout and "engines.shortcut -> tools.pods" in run.stdout


def project_imports(source: str) -> set[str]:
    """The project modules a source imports, dotted as far as it says (`from a import b` → a.b)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = {*config["tool"]["importlinter"]["root_packages"], *SINGLE_FILE_MODULES}
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in project}


def imports_of(module: str) -> set[str]:
    return project_imports((ROOT / f"{module}.py").read_text())


def under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def test_settings_and_errors_import_no_project_module():
    assert imports_of("settings") == set()
    assert imports_of("errors") == set()


def test_runtime_sits_below_tools():
    # tools and agents import runtime, and import-linter cannot follow it: its own imports must not lead above tools
    assert {name for name in imports_of("runtime") if under(name, ABOVE_TOOLS)} == set()


def test_the_server_reaches_the_agent_team_only_through_its_api_and_mcp_face():
    allowed = ("agents.api", "agents.mcp")  # the Python API, and the team's MCP tools declared on top of it
    assert {n for n in imports_of("server") if under(n, ("agents",)) and not under(n, allowed)} == set()


def test_project_imports_sees_every_form():
    source = "import os, notifiers.log\nfrom agents import graph\nfrom agents.api import Team\n"
    source += "def f():\n    import bots\n"

    assert project_imports(source) == {"notifiers.log", "agents.graph", "agents.api.Team", "bots"}
