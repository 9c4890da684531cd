"""The scale-out path: the unchanged training loop under torchrun (DistributedDataParallel, gloo on CPU)."""

import json
import os
import subprocess
import sys

import pytest

from hwlib.config import REPO_ROOT
from hwlib.study.launch import weight_digest


def _torchrun(model, out, nproc=2, extra=()):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "hwlib.run", model, "--profile", "smoke", "--steps", "4", "--out", str(out), *extra]
    res = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stdout[-3000:]
    return json.loads((out / f"{model}_s0.result.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("model", ["heatmap", "detector"])
def test_two_gloo_ranks_end_with_identical_weights(tmp_path, model):
    """Each rank draws different batches; only the gradient all-reduce keeps their weights equal."""
    r = _torchrun(model, tmp_path)
    assert r["world_size"] == 2
    assert len(r["weight_digests"]) == 2 and r["weight_digests"][0] == r["weight_digests"][1]
    assert r["history"]["steps"] == [0, 1, 2, 3]
    assert r["final"], "rank 0 validates at the end"
    # the checkpoint rank 0 wrote holds those weights, and they moved away from the initialisation
    import torch

    from hwlib.config import load_profile
    from hwlib.vision.detector import build_detector
    from hwlib.vision.keypoints import build_keypoint_model
    from hwlib.vision.train import load_checkpoint

    P = load_profile("smoke")
    fresh = build_detector(P.detector) if model == "detector" else build_keypoint_model(model, P.keypoint)
    torch.manual_seed(0)
    init_digest = weight_digest(fresh)
    load_checkpoint(tmp_path / f"{model}_s0.pt", fresh)
    assert weight_digest(fresh) == r["weight_digests"][0] != init_digest


def test_weight_digest_sees_every_parameter():
    import torch

    m = torch.nn.Linear(3, 2)
    d = weight_digest(m)
    with torch.no_grad():
        m.bias[0] += 1e-6
    assert weight_digest(m) != d
