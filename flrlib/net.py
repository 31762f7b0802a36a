"""The one offline switch and the one reachability check.

``offline()`` is true when any of ``FLR_OFFLINE``, ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` or
``TRANSFORMERS_OFFLINE`` is set to a true value (``1``, ``true``, ``yes``, ``on``; case-insensitive). Every loader
that could touch the network (models, Hub datasets, the data step's downloads) asks this first, so
``FLR_OFFLINE=1`` keeps the whole package off the network. When ``FLR_OFFLINE`` is set, the Hugging Face libraries'
own switches are set too (:func:`apply`), so nothing below us phones home either.
"""
from __future__ import annotations

import os
import socket

SWITCHES = ("FLR_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in SWITCHES)


def apply() -> None:
    """Under ``FLR_OFFLINE``, switch the Hugging Face libraries offline as well (call before they are imported)."""
    if os.environ.get("FLR_OFFLINE", "").strip().lower() in _TRUE:
        for v in SWITCHES[1:]:
            os.environ[v] = "1"


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """False at once when offline; otherwise a quick TCP check, so that an unreachable host fails in seconds
    instead of after a client's retries."""
    if offline():
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
