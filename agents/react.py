"""The loop every model-driven agent runs: ask the model, run the tools it calls (only its own, concurrently,
through the guarded pipeline), feed back the results fenced as untrusted data, until it answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolCall, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from agents.crew import UNTRUSTED_NOTE, Turn, fence
from agents.tools import as_langchain_tool
from guard.pipeline import Answer
from tools.catalogue import ToolSpec

MAX_TURNS = 12  # model calls of one agent per hand-off; the run's budget bounds the total


async def react(
    turn: Turn,
    system: str,
    task: str,
    specs: Sequence[ToolSpec],
    *,
    extra: Sequence[Any] = (),
    on_answer: Callable[[str, Answer], None] | None = None,
) -> str:
    """Run the agent on `task` with the catalogue tools `specs` (plus `extra` LangChain tools outside the
    catalogue, such as the coder's sandbox); return its final report. `on_answer(tool, answer)` sees every
    successful catalogue tool result, so the caller can keep what it needs (findings, a plan)."""
    model = turn.crew.model
    assert model is not None
    schemas = [convert_to_openai_tool(as_langchain_tool(turn.crew.pipeline, s, turn.user, turn.agent)) for s in specs]
    extras = {t.name: t for t in extra}
    schemas += [convert_to_openai_tool(t) for t in extra]
    bound = model.bind_tools(schemas) if schemas else model
    messages: list[BaseMessage] = [SystemMessage(f"{system}\n\n{UNTRUSTED_NOTE}"), HumanMessage(task)]
    for _ in range(MAX_TURNS):
        reply = await turn.chat(bound, messages)
        messages.append(reply)
        if not reply.tool_calls and not reply.invalid_tool_calls:
            return str(reply.content).strip() or "(no answer)"
        messages += [
            ToolMessage(
                f"Your call of {bad.get('name') or 'a tool'} could not be read "
                f"({bad.get('error') or 'arguments are not valid JSON'}). "
                "Send the call again with a JSON object of arguments that matches the tool's schema.",
                tool_call_id=bad.get("id") or "invalid",
                status="error",
            )
            for bad in reply.invalid_tool_calls
        ]
        results = await asyncio.gather(*(_run(turn, specs, extras, call, on_answer) for call in reply.tool_calls))
        messages += results
    return f"The {turn.agent} stopped after {MAX_TURNS} model calls without a final answer."


async def _run(
    turn: Turn,
    specs: Sequence[ToolSpec],
    extras: dict[str, Any],
    call: ToolCall,
    on_answer: Callable[[str, Answer], None] | None,
) -> ToolMessage:
    name, args = call["name"], call.get("args") or {}
    if name in extras:
        turn.spend(tool_calls=1)
        try:
            text = str(await extras[name].ainvoke(args))
        except ValidationError as e:  # the model's arguments do not fit the tool: tell it which, so it can retry
            problems = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in e.errors())
            text, status = f"Invalid arguments for {name}: {problems}", "error"
        else:
            status = "success"
        turn.note("tool", name, arguments=args, result=text[:300])
        return ToolMessage(fence(name, text), tool_call_id=call["id"], name=name, status=status)
    if not isinstance(args, dict):
        args = {"_": json.dumps(args)}
    answer = await turn.tool(name, args, allowed=specs)
    if on_answer is not None and not answer.is_error:
        on_answer(name, answer)
    return ToolMessage(
        fence(name, answer.text), tool_call_id=call["id"], name=name, status="error" if answer.is_error else "success"
    )
