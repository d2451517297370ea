"""The agents (researcher, fixer, coder, notifier under a LangGraph supervisor) — built on `agents.tools`."""
