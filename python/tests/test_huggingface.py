"""The Hugging Face callback inside a real ``Trainer.train`` on CPU: it logs forgetting through
``Trainer.log`` (into ``state.log_history``), forgetting rises when the learning rate is large, the
state is written into checkpoints and restored on resume, and ``should_stop`` stops training."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed")
pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")

from factortopy.callbacks.huggingface import FactortopyTrainerCallback  # noqa: E402

from toy import LAYERS, assert_forgetting_rises, monitor_options, setup  # noqa: E402


class Pairs(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


def run(tmp_path, lr, steps=24, resume=None, threshold=None, attach=True):
    net, probe, brain, x, y = setup(0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=16,
        learning_rate=lr,
        lr_scheduler_type="constant",
        optim="sgd",
        save_steps=12,
        logging_steps=1000,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=net, args=args, train_dataset=Pairs(x, y))
    cb = FactortopyTrainerCallback(brain, probe, LAYERS, every_n_steps=4, options=monitor_options(forgetting_threshold=threshold))
    if attach:
        cb.attach(trainer)
    else:
        trainer.add_callback(cb)
    trainer.train(resume_from_checkpoint=resume)
    return trainer, cb


def logged(trainer, key="factortopy/forgetting"):
    return [(h["step"], h[key]) for h in trainer.state.log_history if key in h]


def test_forgetting_is_logged_and_rises_with_the_learning_rate(tmp_path):
    gentle, _ = run(tmp_path / "gentle", lr=1e-4)
    harsh, cb = run(tmp_path / "harsh", lr=0.5)
    g, h = logged(gentle), logged(harsh)
    assert_forgetting_rises(g, h)
    assert logged(harsh, "factortopy/cka/body.5")[-1][1] < 1.0


def test_state_is_checkpointed_and_restored(tmp_path):
    first, cb1 = run(tmp_path, lr=0.5, steps=12)
    assert (tmp_path / "checkpoint-12" / cb1.state_file).is_file()
    resumed, cb2 = run(tmp_path, lr=0.5, steps=20, resume=str(tmp_path / "checkpoint-12"))
    steps = [r["step"] for r in cb2.monitor.history]
    assert steps == [0, 4, 8, 12, 16, 20], steps
    assert cb2.monitor.history[:4] == cb1.monitor.history


def test_should_stop_ends_training_and_unattached_logging(tmp_path):
    trainer, cb = run(tmp_path, lr=2.0, steps=200, threshold=0.05, attach=False)
    assert trainer.state.global_step < 200
    assert cb.monitor.history[-1]["should_stop"]
    assert logged(trainer)[-1][1] > 0.05


def test_two_monitors_need_distinct_state(tmp_path):
    net, probe, brain, x, y = setup(0)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True)
    trainer = transformers.Trainer(model=net, args=args, train_dataset=Pairs(x, y))
    a = FactortopyTrainerCallback(brain, probe, LAYERS).attach(trainer)
    b = FactortopyTrainerCallback(brain, probe, LAYERS, prefix="other/").attach(trainer)
    assert a.state_file != b.state_file and a.state_file.startswith("factortopy_monitor-")
    with pytest.raises(ValueError, match="different prefix"):
        FactortopyTrainerCallback(brain, probe, LAYERS).attach(trainer)
