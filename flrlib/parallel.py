"""Data parallel across processes launched by ``accelerate launch`` / ``torchrun`` (which set ``RANK`` and
``WORLD_SIZE``): this process's rank, and the two collectives the Scorer and the runner need, over gloo (CPU
objects; works beside an NCCL group that a Trainer may have set up in the same process).

``world()`` is ``(0, 1)`` in a plain run, and nothing here imports torch then.
"""
from __future__ import annotations

import datetime
import os

_GROUP = None


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process from the launcher's environment."""
    n = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return (int(os.environ.get("RANK", "0") or 0), n) if n > 1 else (0, 1)


def _group():
    """The gloo process group (initialised on first use from the ``env://`` variables; long timeout, because a
    rank may wait at a collective while another scores or runs a notebook alone)."""
    global _GROUP
    import torch.distributed as dist

    if not dist.is_initialized():
        hours = float(os.environ.get("FLR_DIST_TIMEOUT_H", "48"))
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=hours))
    if _GROUP is None:
        _GROUP = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return _GROUP


def all_gather(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if world()[1] == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world()[1]
    dist.all_gather_object(out, obj, group=_group())
    return out


def barrier() -> None:
    if world()[1] > 1:
        import torch.distributed as dist

        dist.barrier(group=_group())
