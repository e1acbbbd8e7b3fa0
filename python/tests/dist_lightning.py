"""A 2-process Lightning DDP job on CPU (gloo), run by test_distributed.py under torchrun.

In one process group it runs three fits of the toy network with two monitors each (two probe
brains, two prefixes): 12 steps with a checkpoint at step 12; a resume from that checkpoint to step
20; and a harsh run that the first monitor stops. Every rank writes what it logged, its final step
and (rank 0) the monitors' histories to OUT/rank<r>.json for the test to compare.
"""

import json
import os
import sys

import torch

import lightning.pytorch as pl

from factortopy.callbacks.lightning import FactortopyCallback

from toy import LAYERS, monitor_options, second_brain, setup

MODULE_LAYERS = ["net." + name for name in LAYERS]


class Module(pl.LightningModule):
    def __init__(self, net, lr):
        super().__init__()
        self.net = net
        self.lr = lr

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _idx):
        x, y = batch
        return self.net(x, y)["loss"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class Recording(FactortopyCallback):
    """Records every set of numbers it logs, on every rank."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logged = []

    def _log(self, trainer, metrics, step):
        self.logged.append([step, metrics])
        super()._log(trainer, metrics, step)


def callbacks(brains, probe, threshold=None):
    return [
        Recording(brains[0], probe, MODULE_LAYERS, every_n_steps=4, options=monitor_options(forgetting_threshold=threshold)),
        Recording(brains[1], probe, MODULE_LAYERS[1:], every_n_steps=4, prefix="second/", options=monitor_options()),
    ]


def fit(out, lr, steps, cbs, ckpt=None):
    net, probe, brain, x, y = setup(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=False)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        logger=False,
        callbacks=[*cbs, pl.callbacks.ModelCheckpoint(dirpath=os.path.join(out, "ckpt"), every_n_train_steps=12, save_top_k=-1)],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(net, lr), loader, ckpt_path=ckpt)
    return {
        "global_step": trainer.global_step,
        "logged": [cb.logged for cb in cbs],
        "history": [cb.driver.history for cb in cbs],
        "state_keys": [cb.state_key for cb in cbs],
    }


def main(out):
    _net, probe, brain, _x, _y = setup(0)
    brains = [brain, second_brain(0)]
    result = {"first": fit(out, 0.05, 12, callbacks(brains, probe))}
    ckpt = os.path.join(out, "ckpt", "epoch=0-step=12.ckpt")
    result["resumed"] = fit(out, 0.05, 20, callbacks(brains, probe), ckpt=ckpt)
    result["stopped"] = fit(os.path.join(out, "stop"), 0.5, 200, callbacks(brains, probe, threshold=0.05))
    rank = torch.distributed.get_rank()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
