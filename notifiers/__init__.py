"""Notifiers (Slack, Feishu/Lark) behind one small interface — the notifier agent and the bots use them."""
