"""The Lightning callback inside a real ``Trainer.fit`` on CPU: it logs forgetting through the
trainer's logger, forgetting rises when the learning rate is large, the state travels with
checkpoints, and ``should_stop`` stops training."""

import csv

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed")

from factortopy.callbacks.lightning import FactortopyCallback  # noqa: E402

from toy import LAYERS, assert_forgetting_rises, monitor_options, setup  # noqa: E402


# The callback sees the LightningModule, which holds the network as `net`.
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


def run(tmp_path, lr, steps=24, ckpt=None, callback=None, seed=0, **cb_kwargs):
    net, probe, brain, x, y = setup(seed)
    module = Module(net, lr)
    cb = callback or FactortopyCallback(brain, probe, MODULE_LAYERS, every_n_steps=4, options=monitor_options(), **cb_kwargs)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(tmp_path, name="run"),
        callbacks=[cb, pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=12, save_top_k=-1)],
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(module, loader, ckpt_path=ckpt)
    return trainer, cb, brain


def logged_forgetting(trainer):
    path = trainer.logger.experiment.metrics_file_path
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("factortopy/forgetting")]
    return [(int(r["step"]), float(r["factortopy/forgetting"])) for r in rows]


def test_forgetting_is_logged_and_rises_with_the_learning_rate(tmp_path):
    gentle, cb_gentle, _ = run(tmp_path / "gentle", lr=1e-4)
    harsh, cb_harsh, _ = run(tmp_path / "harsh", lr=0.05)
    g, h = logged_forgetting(gentle), logged_forgetting(harsh)
    assert_forgetting_rises(g, h)
    assert "factortopy/cka/net.body.5" in harsh.callback_metrics
    assert len(cb_harsh.monitor.history) == 7


def test_state_travels_with_checkpoints(tmp_path):
    first, cb1, _ = run(tmp_path, lr=0.05, steps=12)
    ckpt = tmp_path / "ckpt" / "epoch=0-step=12.ckpt"
    assert ckpt.is_file()
    # A fresh callback resumes the monitor from the checkpoint: same reference, history continues.
    resumed, cb2, _ = run(tmp_path / "resumed", lr=0.05, steps=20, ckpt=str(ckpt))
    steps = [r["step"] for r in cb2.monitor.history]
    assert steps == [0, 4, 8, 12, 16, 20], steps
    assert cb2.monitor.history[:4] == cb1.monitor.history


def test_should_stop_ends_training(tmp_path):
    net, probe, brain, x, y = setup(0)
    cb = FactortopyCallback(brain, probe, MODULE_LAYERS, every_n_steps=4, options=monitor_options(forgetting_threshold=0.05))
    trainer, cb, _ = run(tmp_path, lr=0.5, steps=200, callback=cb)
    assert trainer.global_step < 200
    assert cb.monitor.history[-1]["should_stop"]


def test_state_keys_are_unique_per_monitor_and_stable():
    net, probe, brain, x, y = setup(0)
    a = FactortopyCallback(brain, probe, MODULE_LAYERS)
    same = FactortopyCallback(brain, probe.clone(), list(MODULE_LAYERS))
    others = [
        FactortopyCallback(brain, probe, MODULE_LAYERS[1:]),
        FactortopyCallback(brain, probe[:100], MODULE_LAYERS),
        FactortopyCallback(brain, probe + 1, MODULE_LAYERS),
        FactortopyCallback(brain, probe, MODULE_LAYERS, prefix="second/"),
    ]
    assert a.state_key == same.state_key and a.state_key.startswith("FactortopyCallback")
    keys = {a.state_key, *(o.state_key for o in others)}
    assert len(keys) == 1 + len(others), keys
