"""The README's tool and settings tables, generated from the catalogue and the settings model.

python scripts/docs.py           # print them
python scripts/docs.py --write   # rewrite them in README.md (a test checks they are current)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from settings import Settings
from tools.catalogue import load_all


def tool_table() -> str:
    lines = ["| tool | toolset | access | what it does |", "|---|---|---|---|"]
    for spec in sorted(load_all().values(), key=lambda s: (s.toolset, s.name)):
        first = " ".join(spec.description.split("\n\n")[0].split())
        lines.append(f"| `{spec.name}` | {spec.toolset} | {spec.access} | {first} |")
    return "\n".join(lines)


def settings_table() -> str:
    lines = ["| environment variable | default | meaning |", "|---|---|---|"]
    defaults = Settings.model_construct()
    for group, field in Settings.model_fields.items():
        value = (
            getattr(defaults, group, None)
            if group in defaults.__dict__
            else field.get_default(call_default_factory=True)
        )
        if isinstance(value, BaseModel):
            for name, sub in type(value).model_fields.items():
                default = getattr(value, name)
                if group == "store" and name == "path":
                    default = "~/.local/share/cloudpilot/cloudpilot.db"
                lines.append(
                    f"| `CLOUDPILOT_{group.upper()}__{name.upper()}` | `{default}` | {sub.description or ''} |"
                )
        else:
            lines.append(f"| `CLOUDPILOT_{group.upper()}` | `{value}` | {field.description or ''} |")
    return "\n".join(lines)


README = Path(__file__).resolve().parents[1] / "README.md"


def render_readme(text: str) -> str:
    """`text` with the tables between the BEGIN/END markers regenerated."""
    for name, body in (("tools", tool_table()), ("settings", settings_table())):
        pattern = re.compile(rf"(<!-- BEGIN {name}[^\n]*-->\n).*?(<!-- END {name} -->)", re.S)
        text = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    if "--write" in sys.argv:
        README.write_text(render_readme(README.read_text()))
    else:
        print(tool_table(), settings_table(), sep="\n\n")
