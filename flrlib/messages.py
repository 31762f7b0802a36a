"""The one message validator (base layer: the data loaders, the CLI and the chat layouts all use it)."""
from __future__ import annotations


def check_messages(messages, where: str = "messages") -> None:
    """The one message validator: roles, string contents and role order.

    Order: an optional ``system`` message first, then turns that alternate and start with ``user``. Chat templates
    would render anything else silently (or raise deep inside Jinja), and the scores would not mean what they say.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: expected a non-empty list of {{'role', 'content'}} messages")
    prev = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"{where}[{i}]: 'role' must be system, user or assistant (got {m!r:.80})")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"{where}[{i}]: 'content' must be a string")
        role = m["role"]
        if role == "system" and i:
            raise ValueError(f"{where}[{i}]: a 'system' message is only allowed first")
        if role == "assistant" and prev in (None, "system"):
            raise ValueError(f"{where}[{i}]: the first turn must be 'user', not 'assistant'")
        if role == prev and role != "system":
            raise ValueError(f"{where}[{i}]: two {role!r} turns in a row")
        prev = role
