"""The team's chat model: `langchain-openai` against any OpenAI-compatible server (OpenAI, Ollama, vLLM, DeepSeek,
Qwen, ...), configured by the `llm.*` settings. The API key stays inside the client: it is never logged, returned
or put into a prompt."""

from __future__ import annotations

from urllib.parse import urlsplit

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from settings import LlmSettings

NOT_CONFIGURED = (
    "No language model is configured, so free-form questions cannot be answered. Set llm.base_url and llm.model "
    "(and llm.api_key if the server needs one), e.g. CLOUDPILOT_LLM__BASE_URL=http://localhost:11434/v1 "
    "CLOUDPILOT_LLM__MODEL=qwen2.5:14b. The autofix workflow works without a model."
)


def chat_model(settings: LlmSettings) -> BaseChatModel | None:
    """The configured model, or None when llm.base_url/llm.model are not set."""
    if not settings.configured:
        return None
    return ChatOpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key or "not-needed",  # local servers (Ollama, vLLM) accept any key
        model=settings.model or "",
        temperature=settings.temperature,
        timeout=settings.timeout_seconds,
        max_retries=settings.max_retries,
        streaming=settings.streaming,
        stream_usage=True,
    )


def describe(settings: LlmSettings) -> str:
    """Where the model lives, for messages: scheme, host and model name; never the key or URL credentials."""
    if not settings.configured:
        return "no model"
    parts = urlsplit(settings.base_url or "")
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"model {settings.model} at {parts.scheme}://{host}{port}"
