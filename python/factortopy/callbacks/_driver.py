"""What the framework callbacks share: building the monitor from the model before fine-tuning,
observing every K steps, turning a report into loggable numbers, and the state for checkpoints."""

from __future__ import annotations

import math
import os
from typing import Callable

from ..data import Brain, Features
from ..hooks import LayerSpec, collect_features
from ..monitor import Monitor, MonitorOptions, StepReport


class MonitorDriver:
    """Framework-independent core of the callbacks."""

    def __init__(
        self,
        brain: Brain,
        probe_images,
        layers: LayerSpec,
        *,
        every_n_steps: int = 50,
        options: MonitorOptions | None = None,
        encoder_path: str | os.PathLike | None = None,
        stop_on_forgetting: bool = True,
        history_file: str | os.PathLike | None = None,
        prefix: str = "factortopy/",
        collect_kwargs: dict | None = None,
        on_report: Callable[[int, StepReport], None] | None = None,
    ):
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be at least 1")
        self.brain = brain
        self.probe_images = probe_images
        self.layers = layers
        self.every_n_steps = every_n_steps
        self.options = options
        self.encoder_path = encoder_path
        self.stop_on_forgetting = stop_on_forgetting
        self.history_file = history_file
        self.prefix = prefix
        self.collect_kwargs = dict(collect_kwargs or {})
        self.on_report = on_report
        self.monitor: Monitor | None = None
        # Display names of the watched layers, as hooks.collect names them.
        self.layer_names: list[str] = [str(k) for k in layers]
        self._last_step: int | None = None
        self.last_metrics: dict = {}

    def features(self, model) -> Features:
        return collect_features(model, self.probe_images, self.layers, **self.collect_kwargs)

    def start(self, model, step: int = 0) -> None:
        """Builds the monitor from the model as it is now (the reference), unless one was restored.
        Observes the reference itself at ``step`` so the curves start at zero forgetting."""
        if self.monitor is not None:
            return
        feats = self.features(model)
        self.monitor = Monitor(self.brain, feats, self.options, encoder_path=self.encoder_path)
        if self.history_file is not None:
            self.monitor.set_history_file(self.history_file)
        self._observe_features(step, feats)

    def due(self, step: int) -> bool:
        return step % self.every_n_steps == 0 and step != self._last_step

    def observe(self, model, step: int) -> tuple[dict, bool]:
        """Observes the model at ``step``: (metrics to log, whether to stop training)."""
        if self.monitor is None:
            self.start(model, step)
            return self.last_metrics, False
        return self._observe_features(step, self.features(model))

    def _observe_features(self, step: int, feats: Features) -> tuple[dict, bool]:
        report = self.monitor.observe(step, feats)
        self._last_step = step
        s = report.summary
        m = {
            "forgetting": s["forgetting"],
            "retention": s["retention"],
            "r2": s["r2"],
            "min_cka": s["min_cka"],
            "mean_cka": s["mean_cka"],
        }
        for name, c in zip(self.layer_names, report.cka):
            m[f"cka/{name}"] = c
        if s["refitted"]:
            for k in ("slope", "b0", "b1", "spearman", "layer_shift", "argmax_moved", "refit_r2"):
                m[k] = s[k]
        metrics = {self.prefix + k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}
        self.last_metrics = metrics
        if self.on_report is not None:
            self.on_report(step, report)
        stop = bool(s["should_stop"]) and self.stop_on_forgetting
        return metrics, stop

    # State for checkpoints -------------------------------------------------------------------

    def state_bytes(self) -> bytes | None:
        return None if self.monitor is None else self.monitor.to_bytes()

    def restore(self, data: bytes) -> None:
        self.monitor = Monitor.from_bytes(data, self.brain)
        if self.history_file is not None:
            self.monitor.set_history_file(self.history_file)
        hist = self.monitor.history
        self._last_step = hist[-1]["step"] if hist else None

    @property
    def history(self) -> list[dict]:
        return [] if self.monitor is None else self.monitor.history
