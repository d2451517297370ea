"""A scripted OpenAI-compatible chat-completions server, so tests drive the real `langchain-openai` client."""
