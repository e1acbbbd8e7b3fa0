"""The callbacks under torch.distributed (DESIGN §6, "Training loops at scale"): every rank runs
the probe forward pass on its shard of the probe set, the shards' features (already resized to
the fit grid, so the traffic is small) are gathered to rank 0 in the probe set's order, the monitor
runs on rank 0, and what it decided is broadcast so that every rank logs the same numbers and stops
at the same step. Without an initialised process group of more than one rank, every function here
is the single-process identity.

Why every rank runs a forward pass: under FSDP or ZeRO-3 the parameters are sharded and each
forward gathers them from all ranks, so a forward on rank 0 alone would wait for ranks that never
join. Every rank therefore runs the same number of batches: shards are padded to equal length (the
padding images are run and dropped). A probe set given as an iterable of batches (not a tensor)
cannot be split without reading it; each rank then runs all of it and rank 0 keeps its own
features, which is correct under every strategy and only costs the redundant forward passes.

Failures do not hang the group: whether every rank collected its features is agreed on before any
gather, and an error in the monitor on rank 0 is broadcast and raised on every rank.
"""

from __future__ import annotations

import math

import torch


class Group:
    """The default process group as the callbacks use it (or a single process when there is none)."""

    def __init__(self):
        dist = torch.distributed
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1
        # NCCL moves only CUDA tensors; gloo (and the rest) host tensors.
        self.device = torch.device("cpu")
        if self.active and dist.get_backend() == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (picklable objects)."""
        if not self.active:
            return obj
        box = [obj if self.is_root else None]
        torch.distributed.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def all_ok(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every rank."""
        if not self.active:
            return ok
        flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor | None:
        """Every rank's ``t`` (same shape and dtype on all ranks) joined along dim 0 in rank order,
        on rank 0 (None elsewhere), on the device of rank 0's ``t``: host tensors stay on the host,
        and CUDA tensors (``collect(keep_on_device=True)``) on their device, where NCCL gathers
        them without a host copy (gloo goes through the host and puts the result back). Sent as
        raw bytes, so any dtype travels on any backend."""
        if not self.active:
            return t
        raw = t.contiguous().view(torch.uint8).to(self.device)
        parts = [torch.empty_like(raw) for _ in range(self.world)] if self.is_root else None
        torch.distributed.gather(raw, parts, dst=0)
        if not self.is_root:
            return None
        return torch.cat([p.to(t.device).view(t.dtype) for p in parts])


def shard(images, group: Group):
    """(this rank's images, how many of the gathered rows to keep, whether to gather).

    A tensor ``[N, ...]`` is split into ``world`` contiguous shards of ``ceil(N / world)`` images,
    the last ones padded with copies of image 0, so that the shards joined in rank order start
    with the N probe images in order. Anything else is run whole on every rank and not gathered."""
    if not group.active:
        return images, None, False
    if not isinstance(images, torch.Tensor):
        return images, None, False
    n = images.shape[0]
    per = math.ceil(n / group.world)
    start = min(group.rank * per, n)
    mine = images[start : start + per]
    if mine.shape[0] < per:
        pad = images[:1].expand(per - mine.shape[0], *images.shape[1:])
        mine = torch.cat([mine, pad])
    return mine, n, True


def gather_collected(collected: list, keep: int, group: Group) -> list | None:
    """``hooks.collect`` output of every rank's shard, joined on rank 0 in the probe set's order
    and cut to the first ``keep`` rows (None on other ranks). Each rank's tensors are released as
    they are sent."""
    out = [] if group.is_root else None
    while collected:
        name, local, glob = collected.pop(0)
        full_local = group.gather_rows(local)
        del local
        full_glob = None
        if glob is not None:
            full_glob = group.gather_rows(glob)
            del glob
        if out is not None:
            out.append((name, full_local[:keep], None if full_glob is None else full_glob[:keep]))
    return out
