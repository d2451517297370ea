"""The README's tool and settings tables match the catalogue and the settings model."""

from pathlib import Path

from scripts.docs import render_readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tables_are_current():
    text = README.read_text()
    assert render_readme(text) == text, "run: python scripts/docs.py --write"
