"""Runbooks: how to confirm and fix each kind of finding, found by question or finding code.

Searches the runbooks shipped with CloudPilot and the operator's folders (`agents.runbook_folders`) through
`engines.runbooks`. Read-only: nothing here touches a cluster.
"""

from __future__ import annotations

import difflib
from typing import Annotated

from pydantic import BaseModel, Field

from engines import runbooks as engine
from errors import InvalidInput, NotFound, quote
from runtime import current, validate_limit
from tools.catalogue import tool
from tools.results import Result

QUESTION_CHARS = 2_000
MAX_CODES = 20
DEFAULT_LIMIT = 5
MAX_LIMIT = 20
RUNBOOK_CHARS = 40_000  # runbook_get returns at most this much of one runbook
ECHO_CHARS = 120  # how much of the question a rendering repeats


class RunbookHit(BaseModel):
    id: str = Field(description="Runbook id: pass it to runbook_get, cite it in answers.")
    title: str
    codes: list[str] = Field(description="Finding codes the runbook covers.")
    matched_codes: list[str] = Field(description="Codes of the question this runbook covers.")
    score: float = Field(description="Relevance: text similarity (0-1), plus 1 when it covers a named code.")
    source: str = Field(description="'shipped', or the name of the operator folder it came from.")
    excerpt: str = Field(description="The runbook's passage closest to the question.")


class RunbookHits(Result):
    question: str
    codes: list[str] = Field(description="Finding codes looked for: named in the question or passed in codes.")
    unknown_codes: list[str] = Field(description="Codes passed that no runbook covers.")
    hits: list[RunbookHit]

    def render(self) -> str:
        asked = engine.clip(self.question, ECHO_CHARS) if self.question else ""
        head = f"runbooks for {asked!r}" if asked else "runbooks"
        if self.codes:
            head += f" (codes {', '.join(self.codes)})"
        lines = [head + ":"]
        if not self.hits:
            lines.append("none match; rephrase with the symptom or the finding code from diagnose.")
        for h in self.hits:
            codes = ", ".join(h.codes) or "-"
            lines.append(f"[{h.id}] {h.title} — codes {codes}; score {h.score:g}; {h.source}")
            lines += [f"  {line}" for line in h.excerpt.splitlines() if line.strip()]
        if self.unknown_codes:
            lines.append(f"no runbook covers {', '.join(self.unknown_codes)}.")
        if self.hits:
            lines.append(f'whole runbook: runbook_get(runbook_id="{self.hits[0].id}"); cite runbooks by id.')
        return "\n".join(lines)


class Runbook(Result):
    id: str
    title: str
    codes: list[str]
    source: str = Field(description="'shipped', or the name of the operator folder it came from.")
    text: str = Field(description="The runbook's markdown (without its title/codes header).")
    complete: bool = Field(description="False when the text was cut to the tool's size limit.")

    def render(self) -> str:
        head = f"runbook {self.id} ({self.source}): {self.title}\ncodes: {', '.join(self.codes) or '-'}\n\n"
        tail = "" if self.complete else f"\n[cut at {RUNBOOK_CHARS} characters]"
        return head + self.text + tail


@tool("runbooks", title="Search runbooks")
async def runbooks_search(
    question: Annotated[
        str,
        Field(
            description="The symptom or question, e.g. 'pods restart with CrashLoopBackOff after a deploy'; "
            "finding codes in it (POD_CRASHLOOP, IST0101) count as if passed in codes."
        ),
    ],
    codes: Annotated[
        list[str] | None, Field(description="Finding codes from diagnose or istio_analyze, e.g. ['POD_OOMKILLED'].")
    ] = None,
    limit: Annotated[int | None, Field(description=f"Most runbooks returned (default {DEFAULT_LIMIT}).")] = None,
) -> RunbookHits:
    """Find the runbooks that say how to confirm and fix a problem: CloudPilot's own (one or more per diagnose
    finding code) and the operator's. Ranked by similarity to the question; a runbook covering a finding code
    named in the question or in codes comes first. Returns each runbook's id, title, codes and its most
    relevant passage; runbook_get returns a whole runbook. Cite runbooks by id."""
    rt = current()
    text = question.strip()
    if len(text) > QUESTION_CHARS:
        raise InvalidInput(
            f"question is {len(text)} characters; at most {QUESTION_CHARS}.",
            hint="Describe the symptom in a sentence or two, and pass finding codes in codes.",
        )
    wanted = _codes(codes or [])
    if not text and not wanted:
        raise InvalidInput("Pass a question (the symptom) or finding codes to search the runbooks for.")
    limit = validate_limit(limit, DEFAULT_LIMIT, maximum=MAX_LIMIT)
    folders = list(rt.settings.agents.runbook_folders)
    library = await rt.call(engine.load, folders)
    found = await rt.call(library.search, text, wanted, limit)
    return RunbookHits(
        question=engine.clip(text, 500),
        codes=list(found.codes),
        unknown_codes=list(found.unknown_codes),
        hits=[
            RunbookHit(
                id=h.runbook.id,
                title=h.runbook.title,
                codes=list(h.runbook.codes),
                matched_codes=list(h.matched_codes),
                score=h.score,
                source=h.runbook.source,
                excerpt=h.excerpt,
            )
            for h in found.hits
        ],
    )


@tool("runbooks", title="Read a runbook")
async def runbook_get(
    runbook_id: Annotated[str, Field(description="A runbook id from runbooks_search, e.g. 'pod-crashloop'.")],
) -> Runbook:
    """One runbook in full (markdown): symptoms, how to confirm with CloudPilot's tools, likely causes, the fix
    (and whether fix_plan plans it or the owner decides), and how to verify."""
    rt = current()
    if not engine.ID.fullmatch(runbook_id):
        raise InvalidInput(
            f"runbook_id {quote(runbook_id)} is not a runbook id: ids are names such as 'pod-crashloop' "
            "(letters, digits, '.', '_', '-'; no paths).",
            hint="Use runbooks_search to find runbook ids.",
        )
    library = await rt.call(engine.load, list(rt.settings.agents.runbook_folders))
    found = library.get(runbook_id)
    if found is None:
        close = difflib.get_close_matches(runbook_id, list(library.runbooks), n=3, cutoff=0.6)
        raise NotFound(
            f"There is no runbook {runbook_id!r}" + (f"; close: {', '.join(close)}." if close else "."),
            hint="Use runbooks_search to find runbook ids.",
        )
    return Runbook(
        id=found.id,
        title=found.title,
        codes=list(found.codes),
        source=found.source,
        text=found.body[:RUNBOOK_CHARS],
        complete=len(found.body) <= RUNBOOK_CHARS,
    )


def _codes(values: list[str]) -> list[str]:
    if len(values) > MAX_CODES:
        raise InvalidInput(f"codes holds {len(values)} entries; at most {MAX_CODES}.")
    for value in values:
        if not engine.normalize_codes([value]):
            raise InvalidInput(
                f"codes entry {quote(value)} is not a finding code (like POD_CRASHLOOP or IST0101).",
                hint="Take codes from diagnose or istio_analyze findings.",
            )
    return list(engine.normalize_codes(values))
