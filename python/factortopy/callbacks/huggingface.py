"""A Hugging Face ``TrainerCallback`` that watches the model forget during ``Trainer.train``.

    from factortopy.callbacks.huggingface import FactortopyTrainerCallback
    cb = FactortopyTrainerCallback(brain, probe_images, ["vit.encoder.layer.3", ...], every_n_steps=50)
    cb.attach(trainer)          # adds the callback and lets it log through trainer.log
    trainer.train()

At the start of training it collects the probe features of the model as it is (the reference) and
builds the monitor; every ``every_n_steps`` optimiser steps it observes the model, logs the numbers
(``factortopy/forgetting``, ``factortopy/min_cka``, ...) through ``Trainer.log`` (so they reach
``state.log_history`` and every reporting integration), and stops training when the monitor says
``should_stop``. With every checkpoint it writes the monitor's state into the checkpoint folder
(``cb.state_file``, ``factortopy_monitor-<key>.safetensors``, the key unique per monitor: from its
prefix, layers, probe set and brain) and restores it when training resumes from that checkpoint,
so several monitors on one trainer (give each its own ``prefix``) resume separately. Added with
``trainer.add_callback`` instead of ``attach``, it still works but appends its numbers to
``state.log_history`` directly (the trainer object is not passed to callbacks).

Under ``torchrun``/``accelerate`` (DDP, FSDP, DeepSpeed) every rank runs its shard of the probe
forward pass, the features are gathered to rank 0, the monitor runs there, and every rank logs the
same numbers and stops at the same step (see ``factortopy.callbacks._dist``). The checkpoint
folder is read and written by rank 0 only.
"""

from __future__ import annotations

import os

from transformers import TrainerCallback

from ._driver import MonitorDriver

STATE_PREFIX = "factortopy_monitor"


class FactortopyTrainerCallback(TrainerCallback):
    """Arguments as ``MonitorDriver``: ``brain``, ``probe_images``, ``layers``, and keywords
    ``every_n_steps``, ``options`` (``MonitorOptions``), ``encoder_path``, ``stop_on_forgetting``,
    ``history_file``, ``prefix``, ``collect_kwargs`` (for ``hooks.collect``), ``on_report``,
    ``device``. Add it with :meth:`attach`; it observes every ``every_n_steps`` optimiser steps,
    logs through ``trainer.log``, stops training on forgetting, and saves the monitor's state in
    each checkpoint folder.

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
        self.driver = MonitorDriver(brain, probe_images, layers, **kwargs)
        self._trainer = None

    @property
    def monitor(self):
        """The monitor (on the main process; None on the other ranks)."""
        return self.driver.monitor

    @property
    def state_file(self) -> str:
        """This monitor's file in each checkpoint folder."""
        return f"{STATE_PREFIX}-{self.driver.key}.safetensors"

    def attach(self, trainer) -> "FactortopyTrainerCallback":
        """Adds this callback to ``trainer`` and logs through ``trainer.log``."""
        for other in trainer.callback_handler.callbacks:
            if isinstance(other, FactortopyTrainerCallback) and other is not self and other.state_file == self.state_file:
                raise ValueError(
                    "two factortopy monitors on one trainer with the same prefix, layers, probe set and "
                    "brain would share checkpoint state and logged names; give them different prefix="
                )
        self._trainer = trainer
        trainer.add_callback(self)
        return self

    def _log(self, state, metrics: dict) -> None:
        if not metrics:
            return
        if self._trainer is not None:
            self._trainer.log(dict(metrics))
        else:
            state.log_history.append({**metrics, "step": state.global_step})

    def _checkpoint_dir(self, args, state) -> str:
        return os.path.join(args.output_dir, f"checkpoint-{state.global_step}")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        saved = None
        if state.is_world_process_zero and state.global_step > 0:
            path = os.path.join(self._checkpoint_dir(args, state), self.state_file)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    saved = f.read()
        if self.driver.start(model, state.global_step, saved=saved):
            self._log(state, self.driver.last_metrics)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if not self.driver.due(step):
            return
        metrics, stop = self.driver.observe(model, step)
        self._log(state, metrics)
        if stop:
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        data = self.driver.state_bytes()
        folder = self._checkpoint_dir(args, state)
        if data is None or not os.path.isdir(folder):
            return
        path = os.path.join(folder, self.state_file)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
