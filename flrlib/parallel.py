"""Data parallel across processes launched by ``accelerate launch`` / ``torchrun`` (which set ``RANK`` and
``WORLD_SIZE``): this process's rank, the two collectives the Scorer, the trainers and the runner need, over gloo
(CPU objects; works beside an NCCL group that a Trainer may have set up in the same process), and :func:`once`
(work done by rank 0 alone, its result on every rank: requests to a server, sampling).

``world()`` is ``(0, 1)`` in a plain run, and nothing here imports torch then.
"""
from __future__ import annotations

import atexit
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

    if not dist.is_initialized():  # with GPUs, NCCL for CUDA tensors too: a Trainer's DDP later reuses this group
        import torch

        hours = float(os.environ.get("FLR_DIST_TIMEOUT_H", "48"))
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=hours))
        atexit.register(close)
    if _GROUP is None:
        _GROUP = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return _GROUP


def close() -> None:
    """Destroy the process group (registered at exit by :func:`_group`). A process that exits with a gloo group alive
    can abort in interpreter finalisation ("terminate called without an active exception", SIGABRT: gloo's threads
    still hold Python objects then; pytorch/pytorch#190489); a 2-rank ``reproduce`` in CI died so once."""
    global _GROUP
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _GROUP = None


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


class Rank0Failed(RuntimeError):
    """Raised on the other ranks when the work :func:`once` gave rank 0 failed there (rank 0 raises the error)."""


def once(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run by rank 0 alone, its (picklable) result returned on every rank: for work that must
    happen once whatever the number of ranks (requests to a server or an API, sampling). A plain run just calls it.
    If it fails on rank 0, rank 0 raises the error and the other ranks raise :class:`Rank0Failed` naming it (nobody
    waits forever). ``fn`` must not itself wait for the other ranks (a data-parallel Scorer, a Trainer): they are
    waiting here."""
    rank, n = world()
    if n == 1:
        return fn(*args, **kwargs)
    result, error = None, None
    if rank == 0:
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - sent to the other ranks, re-raised here
            all_gather((None, f"{type(e).__name__}: {e}"))
            raise
    result, error = all_gather((result, None) if rank == 0 else None)[0]
    if error:
        raise Rank0Failed(f"on rank 0: {error}")
    return result
