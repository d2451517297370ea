"""The scripted chat-completions server, driven by the real `langchain_openai.ChatOpenAI` (and so the real `openai`
client): answers and tool calls arrive as LangChain messages, streamed or not; faults surface as the client's own
exceptions after its own retries; every request is kept and its key checked."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.llm.server import Call, Garbage, Hang, ScriptedLLM, Status, Step, Text, ToolCalls, Usage

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-0123456789"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(api_key=KEY) as server:
        yield server


def chat(llm: ScriptedLLM, **options: Any) -> ChatOpenAI:
    options = {"model": "scripted-model", "max_retries": 0, "timeout": 10, "api_key": KEY, **options}
    return ChatOpenAI(base_url=llm.base_url, **options)


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_text_answer_arrives_as_an_ai_message(llm, streaming):
    llm.respond = [Text("Two pods run in web.")]

    reply = await chat(llm, streaming=streaming).ainvoke([SystemMessage("You are terse."), HumanMessage("pods?")])

    assert isinstance(reply, AIMessage)
    assert reply.content == "Two pods run in web."
    assert reply.tool_calls == []
    assert reply.response_metadata["finish_reason"] == "stop"
    [request] = llm.requests
    assert bool(request.get("stream")) is streaming
    assert request["model"] == "scripted-model"
    assert request["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "pods?"},
    ]


@pytest.mark.parametrize("streaming", [False, True])
async def test_tool_calls_arrive_with_parsed_arguments(llm, streaming):
    llm.respond = [
        ToolCalls([Call("pods_list", {"namespace": "web", "limit": 5}), Call("events", {"kinds": ["Pod"]}, id="c-7")])
    ]

    reply = await chat(llm, streaming=streaming).ainvoke("what runs in web?")

    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert [(c["name"], c["args"], c["id"]) for c in reply.tool_calls] == [
        ("pods_list", {"namespace": "web", "limit": 5}, "call_1"),
        ("events", {"kinds": ["Pod"]}, "c-7"),
    ]
    assert reply.invalid_tool_calls == []


async def test_streamed_tool_calls_come_in_several_chunks_that_add_up(llm):
    llm.respond = [ToolCalls([Call("pods_list", {"namespace": "web"}), Call("diagnose", {"namespace": "db"})], "ok")]

    chunks = [c async for c in chat(llm, streaming=True).astream("look")]

    pieces = [tc for c in chunks for tc in c.tool_call_chunks]
    assert len(pieces) > 2 * 2  # per call: id and name, then the arguments in more than one piece
    assert [p["name"] for p in pieces if p["name"]] == ["pods_list", "diagnose"]
    whole = sum(chunks[1:], chunks[0])
    assert isinstance(whole, AIMessageChunk)
    assert whole.content == "ok"
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [
        ("pods_list", {"namespace": "web"}),
        ("diagnose", {"namespace": "db"}),
    ]


async def test_bound_tools_are_offered_and_the_conversation_goes_back_and_forth(llm):
    @tool
    def pods_list(namespace: str, limit: int = 50) -> str:
        """List the pods of a namespace."""
        return f"2 pods in {namespace}"

    def respond(request: dict[str, Any]) -> Step:
        last = request["messages"][-1]
        if last["role"] == "tool":
            return Text(f"Answer from the tool: {last['content']}")
        return ToolCalls([Call("pods_list", {"namespace": "web"})])

    llm.respond = respond
    model = chat(llm, streaming=True).bind_tools([pods_list])

    first = await model.ainvoke("pods in web?")
    result = pods_list.invoke(first.tool_calls[0])
    second = await model.ainvoke([HumanMessage("pods in web?"), first, result])

    assert isinstance(result, ToolMessage)
    assert second.content == "Answer from the tool: 2 pods in web"
    offered = llm.requests[0]["tools"]
    assert [t["function"]["name"] for t in offered] == ["pods_list"]
    assert offered[0]["function"]["parameters"]["required"] == ["namespace"]
    assert llm.requests[1]["messages"][-1] == {"role": "tool", "content": "2 pods in web", "tool_call_id": "call_1"}


async def test_a_raw_argument_string_is_sent_verbatim(llm):
    llm.respond = [ToolCalls([Call("pods_list", '{"namespace": ')])]

    reply = await chat(llm).ainvoke("x")

    assert reply.tool_calls == []
    assert [(c["name"], c["args"]) for c in reply.invalid_tool_calls] == [("pods_list", '{"namespace": ')]


async def test_a_callable_script_answers_from_the_request(llm):
    def respond(request: dict[str, Any]) -> Step:
        system = request["messages"][0]["content"]
        return Text("researcher here") if "researcher" in system else Text("supervisor here")

    llm.respond = respond
    model = chat(llm)

    a = await model.ainvoke([SystemMessage("You are the researcher."), HumanMessage("go")])
    b = await model.ainvoke([SystemMessage("You are the supervisor."), HumanMessage("go")])

    assert (a.content, b.content) == ("researcher here", "supervisor here")


async def test_a_server_error_is_retried_until_it_succeeds(llm):
    llm.respond = [Status(500, "boom"), Status(500, "boom"), Text("third time lucky")]

    reply = await chat(llm, max_retries=2).ainvoke("hi")

    assert reply.content == "third time lucky"
    assert len(llm.requests) == 3


async def test_a_lasting_server_error_raises_after_the_retries(llm):
    llm.respond = lambda request: Status(500, "upstream exploded", {"retry-after-ms": "10"})

    with pytest.raises(openai.InternalServerError, match="upstream exploded"):
        await chat(llm, max_retries=2).ainvoke("hi")

    assert len(llm.requests) == 3


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_body_that_is_not_json_raises_a_json_error_without_a_retry(llm, streaming):
    llm.respond = lambda request: Garbage()

    with pytest.raises(json.JSONDecodeError):
        await chat(llm, streaming=streaming, max_retries=2).ainvoke("hi")

    assert len(llm.requests) == 1


async def test_a_hanging_server_times_out_and_keeps_serving_others(llm):
    llm.respond = lambda request: Hang(30) if request["messages"][-1]["content"] == "slow" else Text("fast")
    started = time.monotonic()

    slow = asyncio.ensure_future(chat(llm, timeout=1, max_retries=0).ainvoke("slow"))
    fast = await chat(llm).ainvoke("quick")  # answered while the slow one hangs
    assert not slow.done()
    with pytest.raises(openai.APITimeoutError):
        await slow

    assert fast.content == "fast"
    assert time.monotonic() - started < 10  # the client's timeout, not the 30 s hang
    assert len(llm.requests) == 2


def test_closing_the_server_ends_a_hang():
    done = threading.Event()
    with ScriptedLLM([Hang(60)], api_key=KEY) as llm:

        def ask() -> None:
            try:
                chat(llm, timeout=60).invoke("hi")
            except openai.APIConnectionError:
                done.set()

        asker = threading.Thread(target=ask)
        asker.start()
        deadline = time.monotonic() + 10
        while not llm.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert llm.requests
    # leaving the block returned although the request was still hanging; its connection is dropped
    asker.join(10)
    assert done.is_set()


async def test_a_wrong_api_key_is_refused(llm):
    llm.respond = [Text("never")]

    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        await chat(llm, api_key="sk-wrong", max_retries=2).ainvoke("hi")

    assert len(llm.requests) == 1  # kept, not retried, and the script untouched
    assert (await chat(llm).ainvoke("hi")).content == "never"


@pytest.mark.parametrize("streaming", [False, True])
async def test_token_usage_is_reported(llm, streaming):
    llm.respond = [Text("counted", usage=Usage(prompt_tokens=123, completion_tokens=45)), Text("estimated " * 40)]
    model = chat(llm, streaming=streaming, stream_usage=True)

    given = await model.ainvoke("hi")
    estimated = await model.ainvoke("a longer question " * 20)

    assert given.usage_metadata is not None
    assert (given.usage_metadata["input_tokens"], given.usage_metadata["output_tokens"]) == (123, 45)
    assert given.usage_metadata["total_tokens"] == 168
    assert estimated.usage_metadata is not None
    assert estimated.usage_metadata["input_tokens"] > 80 and estimated.usage_metadata["output_tokens"] == 100
    if streaming:
        assert llm.requests[0]["stream_options"] == {"include_usage": True}


async def test_a_used_up_script_fails_loudly_without_a_retry(llm):
    llm.respond = [Text("only one")]
    model = chat(llm, max_retries=2)
    await model.ainvoke("one")

    with pytest.raises(openai.BadRequestError, match="used up"):
        await model.ainvoke("two")

    assert len(llm.requests) == 2
    assert "ScriptExhausted" in llm.errors[0]
