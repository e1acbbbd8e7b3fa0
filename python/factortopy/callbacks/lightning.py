"""A PyTorch Lightning ``Callback`` that watches the model forget during ``Trainer.fit``.

    from factortopy.callbacks.lightning import FactortopyCallback
    cb = FactortopyCallback(brain, probe_images, ["features.3", "features.6"], every_n_steps=50)
    trainer = Trainer(callbacks=[cb])

At the start of fitting it collects the probe features of the model as it is (the reference) and
builds the monitor; every ``every_n_steps`` optimiser steps it observes the model, sends the numbers
(``factortopy/forgetting``, ``factortopy/min_cka``, ``factortopy/cka/<layer>``, ...) to every logger
of the trainer and to ``trainer.callback_metrics`` (so ``ModelCheckpoint``/``EarlyStopping`` can
monitor them), and stops training when the monitor says ``should_stop``. The monitor's state is
saved with Lightning's checkpoints and restored when fitting resumes from one; its ``state_key``
is unique per monitor (from its prefix, layers, probe set and brain), so several monitors on one
trainer (two probe sets, two brains: give each its own ``prefix``) checkpoint and resume
separately.

Under DDP, FSDP and the other multi-process strategies every rank runs its shard of the probe
forward pass (through the strategy's wrapper when the model is sharded, so the parameter gathers
match), the features are gathered to rank 0, the monitor runs there, and every rank logs the same
numbers and stops at the same step (see ``factortopy.callbacks._dist``).
"""

from __future__ import annotations

try:
    import lightning.pytorch as pl
except ImportError:  # the standalone package
    import pytorch_lightning as pl  # type: ignore[no-redef]

import torch

from ._driver import MonitorDriver


class FactortopyCallback(pl.Callback):
    """Arguments as ``MonitorDriver``: ``brain``, ``probe_images``, ``layers``, and keywords
    ``every_n_steps``, ``options`` (``MonitorOptions``), ``encoder_path``, ``stop_on_forgetting``,
    ``history_file``, ``prefix``, ``collect_kwargs`` (for ``hooks.collect``), ``on_report``,
    ``device``. It observes every ``every_n_steps`` training batches, logs to the trainer's
    loggers, stops the fit on forgetting, and saves the monitor's state in Lightning checkpoints.

    Parameters
    ----------
    brain : Brain
        The brain the reference encoder is fitted to.
    probe_images : torch.Tensor or iterable
        The probe images (the brain's images), or batches of them.
    layers : sequence of str, or mapping
        The modules to watch, in depth order (as :func:`factortopy.hooks.collect` takes them).
    every_n_steps : int
        Observe every this many optimiser steps (default 50).
    options : MonitorOptions, optional
        Settings of the monitor and its reference fit.
    encoder_path : str or os.PathLike, optional
        A saved reference encoder to use instead of fitting one.
    stop_on_forgetting : bool
        Stop training when the monitor raises ``should_stop`` (default True).
    history_file : str or os.PathLike, optional
        Append every observation here as a JSON line.
    prefix : str
        Prefix of the logged metrics' names (default ``"factortopy/"``).
    collect_kwargs : dict, optional
        Keyword arguments for :func:`factortopy.hooks.collect`.
    on_report : callable, optional
        Called with ``(step, StepReport)`` after every observation.
    device : str or torch.device, optional
        Where the monitor runs; default: the model's device when the library can run there,
        else the CPU. On a CUDA device holding the model, the probe features stay on it
        (``collect(keep_on_device=True)``; as ``MonitorDriver`` decides).
    """

    def __init__(self, brain, probe_images, layers, **kwargs):
        super().__init__()
        self.driver = MonitorDriver(brain, probe_images, layers, **kwargs)
        self._pending_state: dict | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.driver.key)

    @property
    def monitor(self):
        """The monitor (on global rank 0; None on the other ranks)."""
        return self.driver.monitor

    def _log(self, trainer, metrics: dict, step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        for k, v in metrics.items():
            trainer.callback_metrics[k] = torch.tensor(v)

    def on_fit_start(self, trainer, pl_module) -> None:
        saved = None if self._pending_state is None else self._pending_state["monitor"]
        self._pending_state = None
        if self.driver.start(_forward_module(trainer, pl_module), trainer.global_step, saved=saved):
            self._log(trainer, self.driver.last_metrics, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not self.driver.due(step):
            return
        metrics, stop = self.driver.observe(_forward_module(trainer, pl_module), step)
        self._log(trainer, metrics, step)
        if stop:
            trainer.should_stop = True

    def state_dict(self) -> dict:
        data = self.driver.state_bytes()
        if data is None:
            return {}
        return {"monitor": data}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("monitor"):
            self._pending_state = dict(state_dict)


def _forward_module(trainer, pl_module):
    """What the probe images go through: the strategy's wrapper when it shards the parameters
    (FSDP's root gathers them in its forward; calling the inner module would read shards), the
    LightningModule itself otherwise (DDP's wrapper would add a buffer broadcast per batch)."""
    wrapped = getattr(trainer.strategy, "model", None)
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # a torch without distributed support
        return pl_module
    if isinstance(wrapped, FullyShardedDataParallel):
        return wrapped
    return pl_module
