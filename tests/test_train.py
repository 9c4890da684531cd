import json

import pytest
import torch

from hwlib.config import DetectorConfig
from hwlib.vision.keypoints import RegressionNet
from hwlib.vision.train import (CheckpointError, NonFiniteLossError, fit, load_checkpoint, lr_at, make_optimizer,
                                resolve_precision, save_checkpoint)


def _tiny():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(1))


def _batches(step, rng):
    x = torch.from_numpy(rng.standard_normal((4, 1, 6, 6)).astype("float32"))
    return x, x.mean((1, 2, 3))[:, None]


def _mse(out, y):
    return ((out.float() - y) ** 2).mean(), {}


def test_schedule():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, 10) < 0.05
    assert all(lr_at(s, 100, 1.0, 10) >= lr_at(s + 1, 100, 1.0, 10) for s in range(10, 99))


def test_linear_schedule_by_hand():
    # warm-up as the cosine's, then a straight line from the peak to 1% of it over the remaining 90 steps
    assert lr_at(0, 100, 1.0, 10, "linear") == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, 10, "linear") == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, 10, "linear") == pytest.approx(0.01 + 0.99 * 0.5)        # half-way: t = 45 / 90
    assert lr_at(55, 100, 1.0, 10, "cosine") == pytest.approx(0.01 + 0.99 * 0.5)        # both pass the middle there
    assert lr_at(32, 100, 1.0, 10, "linear") == pytest.approx(0.01 + 0.99 * (1 - 22 / 90))
    assert lr_at(32, 100, 1.0, 10, "linear") < lr_at(32, 100, 1.0, 10, "cosine")        # the cosine holds high longer
    assert lr_at(100, 100, 1.0, 10, "linear") == pytest.approx(0.01)
    steps = [lr_at(s, 100, 1.0, 10, "linear") for s in range(10, 100)]
    assert all(a - b == pytest.approx(0.99 / 90) for a, b in zip(steps, steps[1:]))    # a constant slope
    with pytest.raises(ValueError, match="schedule"):
        lr_at(0, 100, 1.0, 10, "step")
    from hwlib.config import SCHEDULES

    assert "range" not in SCHEDULES      # the range test's sweep is no schedule a profile may train with


def test_sgd_is_nesterov_with_yolov5_momentum_by_hand():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = make_optimizer([w], "sgd", lr=0.1, weight_decay=0.0)
    w.grad = torch.tensor([0.5, 1.0])
    opt.step()           # first step: buffer b = g; Nesterov steps along g + momentum * b = 1.937 g
    assert torch.allclose(w.detach(), torch.tensor([1.0 - 0.1 * 1.937 * 0.5, -2.0 - 0.1 * 1.937 * 1.0]))
    w.grad = torch.tensor([0.5, 1.0])
    opt.step()           # second: b = 0.937 b + g = 1.937 g; step g + 0.937 b
    step2 = 0.1 * (1 + 0.937 * 1.937)
    assert torch.allclose(w.detach(), torch.tensor([1.0 - 0.1 * 1.937 * 0.5 - step2 * 0.5,
                                                    -2.0 - 0.1 * 1.937 - step2 * 1.0]))
    assert isinstance(make_optimizer([w], "adamw", 0.1, 0.0), torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer([w], "lion", 0.1, 0.0)


@pytest.mark.parametrize("optimizer,schedule", [("sgd", "cosine"), ("adamw", "linear")])
def test_fit_trains_with_the_optimizer_and_schedule_asked_for(optimizer, schedule, monkeypatch):
    import hwlib.vision.train as train

    seen, made = [], []
    real_lr, real_opt = train.lr_at, train.make_optimizer
    monkeypatch.setattr(train, "lr_at", lambda *a: seen.append(a[-1]) or real_lr(*a))
    monkeypatch.setattr(train, "make_optimizer", lambda p, name, *a: made.append(name) or real_opt(p, name, *a))
    hist = fit(_tiny(), _mse, _batches, steps=3, lr=1e-2, weight_decay=0.0, warmup_steps=1, precision="fp32",
               progress=False, optimizer=optimizer, schedule=schedule)
    assert made == [optimizer] and set(seen) == {schedule} and len(hist.loss) == 3


def test_checkpoint_round_trip_and_config(tmp_path):
    m = RegressionNet(base_channels=8)
    path = save_checkpoint(tmp_path / "m.pt", m, DetectorConfig(steps=3), {"map": 0.5})
    m2 = RegressionNet(base_channels=8)
    payload = load_checkpoint(path, m2)
    assert payload["config"]["steps"] == 3 and payload["metrics"]["map"] == 0.5
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert json.loads((tmp_path / "m.json").read_text())["config"]["steps"] == 3   # the config beside it


def test_checkpoint_errors(tmp_path):
    m = RegressionNet(base_channels=8)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt", m)
    path = save_checkpoint(tmp_path / "m.pt", m, {})
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt is truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.pt", m)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt", m)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an hwlib checkpoint"):
        load_checkpoint(tmp_path / "other.pt", m)
    with pytest.raises(CheckpointError, match="does not match the model's architecture"):
        load_checkpoint(path, RegressionNet(base_channels=16))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    m = RegressionNet(base_channels=8)
    path = save_checkpoint(tmp_path / "m.pt", m, {})
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "m.pt", RegressionNet(base_channels=8), {})
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_fit_reduces_loss_and_is_deterministic():
    def run():
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 1))
        h = fit(m, _mse, _batches, steps=30, lr=1e-2, weight_decay=0.0, warmup_steps=2, seed=1, precision="fp32",
                progress=False, evaluate=lambda mm: {"w": float(mm[1].weight.sum())}, eval_every=10)
        return h
    h1, h2 = run(), run()
    assert h1.loss[-1] < h1.loss[0]
    assert h1.loss == h2.loss and h1.evals[-1]["w"] == h2.evals[-1]["w"]
    assert [e["step"] for e in h1.evals] == [10, 20, 30]


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 1))
    ckpt = tmp_path / "last.pt"

    def loss_fn(out, y):
        loss, _ = _mse(out, y)
        return (loss * float("nan") if fit_state["step"] >= 5 else loss), {}

    fit_state = {"step": 0}

    def batches(step, rng):
        fit_state["step"] = step
        return _batches(step, rng)

    with pytest.raises(NonFiniteLossError, match="at step 5.*last good checkpoint kept") as err:
        fit(m, loss_fn, batches, steps=10, lr=1e-3, weight_decay=0.0, warmup_steps=1, precision="fp32", progress=False,
            evaluate=lambda mm: {"ok": 1.0}, eval_every=2, checkpoint=ckpt)
    assert load_checkpoint(ckpt)["extra"]["step"] == 4
    # the error carries the log up to the last finite step (what a learning-rate range test reads)
    assert err.value.history.steps == [0, 1, 2, 3, 4] and len(err.value.history.loss) == 5


def test_precision_resolution():
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cpu")) in ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", torch.device("cpu"))


def test_weight_average_is_the_ema_of_the_trajectory():
    """With ``ema``, the returned model holds the exponential moving average of the weights after every step
    (decay warmed up as min(d, (1+t)/(10+t))), recomputed by hand from the same run without averaging."""
    def run(ema):
        torch.manual_seed(0)
        lin = torch.nn.Linear(3, 1)
        init = {k: v.clone() for k, v in lin.state_dict().items()}
        seen = []

        def loss(out, y):
            seen.append({k: v.detach().clone() for k, v in lin.state_dict().items()})
            return ((out - y) ** 2).mean(), {}

        def batches(step, rng):
            x = torch.from_numpy(rng.standard_normal((8, 3)).astype("float32"))
            return x, x.sum(1, keepdim=True)

        fit(lin, loss, batches, steps=5, lr=0.1, weight_decay=0.0, warmup_steps=1, precision="fp32",
            progress=False, ema=ema)
        return init, seen, {k: v.clone() for k, v in lin.state_dict().items()}

    init, seen, last = run(0.0)
    after_step = seen[1:] + [last]                        # the weights after steps 0..4
    expected = dict(init)
    for t, w in enumerate(after_step):
        d = min(0.9, (1 + t) / (10 + t))
        expected = {k: d * expected[k] + (1 - d) * w[k] for k in expected}
    _, _, averaged = run(0.9)
    assert all(torch.allclose(averaged[k], expected[k], atol=1e-6) for k in expected)
    assert not torch.allclose(averaged["weight"], last["weight"])
    with pytest.raises(ValueError, match="ema decay"):
        fit(torch.nn.Linear(3, 1), lambda o, y: (o.sum(), {}), lambda s, r: (torch.zeros(2, 3), None), steps=1,
            lr=0.1, weight_decay=0.0, warmup_steps=1, precision="fp32", progress=False, ema=1.5)
