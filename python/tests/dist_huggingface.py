"""A 2-process Hugging Face Trainer job on CPU (gloo), run by test_distributed.py under torchrun.

In one process group it trains the toy network three times with two monitors each (two probe
brains, two prefixes): 12 steps with a checkpoint at step 12; a resume from that checkpoint to step
20; and a harsh run that the first monitor stops. Every rank writes what it logged, its final step
and (rank 0) the monitors' histories to OUT/rank<r>.json for the test to compare.
"""

import json
import os
import sys

import torch
import transformers

from factortopy.callbacks.huggingface import FactortopyTrainerCallback

from toy import LAYERS, monitor_options, second_brain, setup


class Pairs(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class Recording(FactortopyTrainerCallback):
    """Records every set of numbers it logs, on every rank."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logged = []

    def _log(self, state, metrics):
        if metrics:
            self.logged.append([state.global_step, metrics])
        super()._log(state, metrics)


def train(out, lr, steps, threshold=None, resume=None):
    net, probe, brain, x, y = setup(0)
    other = second_brain(0)
    args = transformers.TrainingArguments(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=lr,
        lr_scheduler_type="constant",
        optim="sgd",
        save_steps=12,
        logging_steps=1000,
        report_to=[],
        use_cpu=True,
        ddp_backend="gloo",
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(model=net, args=args, train_dataset=Pairs(x, y))
    cbs = [
        Recording(brain, probe, LAYERS, every_n_steps=4, options=monitor_options(forgetting_threshold=threshold)),
        Recording(other, probe, LAYERS[1:], every_n_steps=4, prefix="second/", options=monitor_options()),
    ]
    for cb in cbs:
        cb.attach(trainer)
    trainer.train(resume_from_checkpoint=resume)
    return {
        "global_step": trainer.state.global_step,
        "logged": [cb.logged for cb in cbs],
        "history": [cb.driver.history for cb in cbs],
        "state_files": [cb.state_file for cb in cbs],
    }


def main(out):
    result = {"first": train(out, 0.5, 12)}
    result["resumed"] = train(out, 0.5, 20, resume=os.path.join(out, "checkpoint-12"))
    result["stopped"] = train(os.path.join(out, "stop"), 2.0, 200, threshold=0.05)
    rank = torch.distributed.get_rank()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
