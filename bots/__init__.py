"""Chat bots (Slack, Feishu): they arrive in the next issue, and reach the agent team only through `agents.api`."""
