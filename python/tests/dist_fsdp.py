"""A 2-process job on CPU (gloo) with a sharded model (torch FSDP2, ``fully_shard``) and a
hand-written training loop driving ``MonitorDriver``, run by test_distributed.py under torchrun.

With sharded parameters every forward pass gathers them from all ranks, so a probe forward pass on
rank 0 alone would wait forever. It checks that the gathered probe features are the
single-process ones in the probe set's order (an odd-sized probe set, so one shard is padded),
that both ranks get the same numbers from a short training run, and that failures end every rank
with an error instead of a hang: a forward error on rank 1 (before sharding: with sharded
parameters the other rank would already be waiting inside its own forward pass, as with any
error in an FSDP forward) and a monitor error on rank 0. Each rank writes OUT/rank<r>.json.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import factortopy as ft
from factortopy.callbacks import MonitorDriver
from factortopy.hooks import collect

from toy import LAYERS, monitor_options, setup


def error_of(fn) -> str:
    try:
        fn()
    except Exception as e:  # recorded for the test
        return f"{type(e).__name__}: {e}"
    return "none"


def main(out):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    net, probe, brain, x, y = setup(0)
    driver = MonitorDriver(brain, probe, LAYERS, every_n_steps=4, options=monitor_options())
    odd = MonitorDriver(brain, probe[:199], LAYERS)
    # Single-process features before sharding, collected as the driver collects them.
    local = collect(net, probe[:199], LAYERS, **odd.collect_options())

    # A forward pass that fails on rank 1 only: every rank raises.
    def forward(model, batch):
        if rank == 1:
            raise ValueError("forward failed on rank 1")
        return model(batch)

    failing = MonitorDriver(brain, probe, LAYERS, options=monitor_options(), collect_kwargs={"forward": forward})
    result = {"rank": rank, "forward_error": error_of(lambda: failing.features(net))}
    for m in net.body:
        if isinstance(m, torch.nn.Conv2d):
            fully_shard(m)
    fully_shard(net)

    gathered = odd.features(net)
    if rank == 0:
        diffs = []
        for i, (_name, loc, glob) in enumerate(local):
            g_loc, g_glob = gathered.layer(i)
            diffs.append(float(abs(torch.from_numpy(g_loc) - loc.float()).max()))
            if glob is not None:
                diffs.append(float(abs(torch.from_numpy(g_glob) - glob.float()).max()))
        result["shape"] = list(gathered.shape)
        result["max_diff"] = max(diffs)
    else:
        result["gathered"] = gathered is None

    driver.start(net, 0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    logged = [[0, driver.last_metrics]]
    for step in range(1, 9):
        idx = (torch.arange(8) + 16 * step + 8 * rank) % x.shape[0]
        loss = net(x[idx], y[idx])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if driver.due(step):
            metrics, _stop = driver.observe(net, step)
            logged.append([step, metrics])
    result["logged"] = logged
    result["history_steps"] = [h["step"] for h in driver.history]

    # A monitor that cannot be built (a brain of other images) fails on rank 0: every rank raises.
    small = ft.synth.plant(ft.Features([torch.randn(50, 4, 3, 3)]), n_voxels=20, grid=3, seed=0)
    result["monitor_error"] = error_of(lambda: MonitorDriver(small, probe, LAYERS, options=monitor_options()).start(net, 0))

    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
