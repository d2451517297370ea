"""What the tool catalogue costs every conversation: bytes of tool definitions as an MCP client receives
them, per toolset, side by side with kubernetes-mcp-server (20 tools: 25 kB, 6,661 cl100k tokens, measured
in shared notes). Tokens ≈ characters / 4 (no tokenizer can be downloaded here).

    python benchmarks/catalogue_size.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server import build_server
from settings import TOOLSETS, Settings


async def sizes(toolsets: list[str], write: bool) -> tuple[int, int, int]:
    s = Settings(server={"toolsets": toolsets}, safety={"allow_write": write, "allow_destructive": write})
    tools = await build_server(s).list_tools()
    full = sum(len(json.dumps(t.model_dump(exclude_none=True, by_alias=True))) for t in tools)
    no_output = sum(
        len(json.dumps(t.model_dump(exclude_none=True, by_alias=True, exclude={"outputSchema"}))) for t in tools
    )
    return len(tools), full, no_output


def main() -> None:
    print(f"{'toolsets':<34} {'tools':>5} {'bytes':>8} {'~tokens':>8} {'w/o outputSchema':>17} {'~tok/tool':>9}")
    rows = [([t], False) for t in TOOLSETS] + [(list(TOOLSETS), False), (list(TOOLSETS), True)]
    for toolsets, write in rows:
        n, full, bare = asyncio.run(sizes(toolsets, write))
        label = ",".join(toolsets) + (" +write" if write else "")
        per = bare // 4 // n if n else 0
        print(f"{label:<34} {n:>5} {full:>8} {full // 4:>8} {bare:>17} {per:>9}")
    print(f"{'kubernetes-mcp-server (notes)':<34} {20:>5} {25000:>8} {6661:>8} {'-':>17} {6661 // 20:>9}")


if __name__ == "__main__":
    main()
