"""The callbacks in real 2-process jobs on CPU (torchrun, gloo): Lightning's DDP strategy, the
Hugging Face Trainer, and a sharded model (FSDP2) in a hand-written loop. Both ranks must log
identical numbers, stop at the same step, resume the same history from a checkpoint, keep two
monitors' histories apart, gather the probe features in order, turn a failure on one rank into an
error on every rank, and finish: a job that hangs is killed by the timeout and fails the test."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# A whole job (two processes, three training runs with two monitors each) takes well under a
# minute on two cores; far more than that means a hang.
TIMEOUT_S = 240


def run_job(script: str, out: Path) -> tuple[dict, dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(HERE / script), str(out)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{script} did not finish in {TIMEOUT_S} s (a hang?):\n{(e.stderr or b'')[-3000:]}")
    assert proc.returncode == 0, proc.stderr[-6000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    return ranks[0], ranks[1]


def steps_of(history):
    return [h["step"] for h in history]


def check_job(r0: dict, r1: dict):
    # Both ranks logged exactly the same numbers at the same steps, for both monitors, in every run.
    for run in ("first", "resumed", "stopped"):
        assert r0[run]["logged"] == r1[run]["logged"], run
        assert r0[run]["global_step"] == r1[run]["global_step"], run
        # The monitors live on rank 0.
        assert all(h == [] for h in r1[run]["history"]), run
    first, resumed, stopped = r0["first"], r0["resumed"], r0["stopped"]
    logged = first["logged"][0]
    assert [s for s, _ in logged] == [0, 4, 8, 12]
    assert logged[0][1]["factortopy/forgetting"] == 0.0 and logged[-1][1]["factortopy/forgetting"] > 0.0
    # Two monitors: each logs under its own prefix and keeps its own history.
    assert all(k.startswith("second/") for _, m in first["logged"][1] for k in m)
    cka = sorted(k for k in first["logged"][1][0][1] if "/cka/" in k)
    assert len(cka) == 2 and cka[0].endswith("body.3") and cka[1].endswith("body.5"), cka
    a, b = first["history"]
    assert steps_of(a) == steps_of(b) == [0, 4, 8, 12]
    assert [len(h["cka"]) for h in a] == [3] * 4 and [len(h["cka"]) for h in b] == [2] * 4
    # Resumed from the step-12 checkpoint: each monitor continues its own history.
    for before, after in zip(first["history"], resumed["history"]):
        assert steps_of(after) == [0, 4, 8, 12, 16, 20]
        assert after[:4] == before
    assert [s for s, _ in resumed["logged"][0]] == [16, 20]
    # The stop decision: taken on the same step by both ranks, long before the step budget.
    assert stopped["global_step"] < 200
    assert stopped["history"][0][-1]["should_stop"]
    assert stopped["global_step"] == stopped["history"][0][-1]["step"]


def test_lightning_ddp_two_processes(tmp_path):
    pytest.importorskip("lightning.pytorch", reason="lightning is not installed")
    r0, r1 = run_job("dist_lightning.py", tmp_path)
    check_job(r0, r1)
    assert r0["first"]["state_keys"][0] != r0["first"]["state_keys"][1]


def test_huggingface_trainer_under_torchrun(tmp_path):
    pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")
    r0, r1 = run_job("dist_huggingface.py", tmp_path)
    check_job(r0, r1)
    files = r0["first"]["state_files"]
    assert files[0] != files[1]
    assert all((tmp_path / "checkpoint-12" / name).is_file() for name in files)


def test_sharded_model_in_a_hand_written_loop(tmp_path):
    r0, r1 = run_job("dist_fsdp.py", tmp_path)
    # The features gathered from both ranks' shards are the single-process ones, in order (199
    # probe images: the second shard is padded and the padding dropped).
    assert r0["shape"] == [199, 3] and r0["max_diff"] == 0.0 and r1["gathered"] is True
    assert r0["logged"] == r1["logged"]
    assert [s for s, _ in r0["logged"]] == r0["history_steps"] == [0, 4, 8]
    assert r0["logged"][-1][1]["factortopy/forgetting"] > 0.0
    # Failures: the rank that failed raises its own error, the other says where it came from.
    assert r1["forward_error"] == "ValueError: forward failed on rank 1"
    assert "another rank failed" in r0["forward_error"]
    assert r0["monitor_error"].startswith("MismatchError") and "brain has 50" in r0["monitor_error"]
    assert r1["monitor_error"].startswith("RuntimeError: factortopy: the monitor on rank 0 failed: MismatchError")
