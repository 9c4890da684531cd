"""Throughput benchmark: images/s of every workload, plain fp32 eager against each faster setting.

    python -m hwlib.bench            # full: every workload and setting (about 10 minutes on 2 cores)
    python -m hwlib.bench --quick    # the same code paths in under 2 minutes on any of our CPUs (fewer
                                     # steps, smaller batches, no tcmalloc worker)

Only the settings this CPU runs natively are timed: bf16 where it has AVX512-BF16 or AMX; elsewhere the
bf16 settings are listed under ``"skipped"`` with the reason, and the full benchmark times emulated bf16
once (one detector step) to show why. ``HWLIB_BF16_NATIVE=0`` takes the no-native-bf16 path on any CPU.

Allocator settings only take effect at process start, so each allocator group runs in its own worker
process (``default`` malloc, ``glibc`` tunables that stop returning freed memory to the OS, ``tcmalloc``
by ``LD_PRELOAD`` where Debian's libtcmalloc is installed); inside a worker, precision and memory-format
settings are timed one after the other on the same model and batch. Every speed is compared with the
plain fp32 eager run measured in the same benchmark run: absolute times on a shared machine are noise.

Writes ``benchmark.json`` (and a ``benchmark.tex`` of macros and a ``benchmark_table.tex``) into the
profile's generated folder, and the time-to-accuracy figure from the training logs of the ``cpu`` run.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

from hwlib.config import ACCURACY_GOALS
from hwlib.vision.train import History

GLIBC = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"
TRAIN_WORKLOADS = ("detector_train", "detector_train_w05", "heatmap_train", "regression_train", "integral_train")


def _tcmalloc() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/libtcmalloc*.so*") + glob.glob("/usr/lib/libtcmalloc*.so*"))
    found = [f for f in found if "debug" not in f and "profiler" not in f]
    return found[0] if found else None


# ----------------------------------------------------------------------------- worker side
def _train_setup(name: str, batch: int):
    from hwlib.config import DetectorConfig, KeypointConfig
    from hwlib.vision.data import make_detection_data, make_keypoint_data
    from hwlib.vision.detector import DetectionLoss, MultiScaleDetector, images_to_input
    from hwlib.vision.keypoints import KeypointLoss, build_keypoint_model

    if name.startswith("detector_train"):
        width = 0.5 if name.endswith("w05") else 1.0
        cfg = DetectorConfig(width=width)
        images, targets = make_detection_data(batch, seed=0)
        return MultiScaleDetector(width=width), DetectionLoss(cfg), images_to_input(images), targets
    method = name.split("_")[0]
    cfg = KeypointConfig()
    images, kps = make_keypoint_data(batch, seed=0)
    return build_keypoint_model(method, cfg), KeypointLoss(method, cfg), images, kps


def _flops_per_image(model, loss_fn, x, y) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    with FlopCounterMode(display=False) as fc:
        loss, _ = loss_fn(model(x), y)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops() / len(x)


def _time_train(model, loss_fn, x, y, precision: str, channels_last: bool, steps: int, compile_: bool = False):
    model.train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    xx = x.contiguous(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = torch.compile(model) if compile_ else model
    compile_s = 0.0

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = run(xx)
        loss, _ = loss_fn(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()                                   # warm-up (and compilation)
    if compile_:
        compile_s = time.perf_counter() - t0
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    model.to(memory_format=torch.contiguous_format)
    return len(x) * steps / dt, compile_s


OP_GROUPS = (("convolution", ("conv",)), ("batch norm", ("batch_norm",)), ("ReLU", ("relu", "threshold")),
             ("optimizer", ("adam", "_foreach", "lerp", "addcdiv", "sqrt")), ("upsampling", ("upsample",)),
             ("copies and layout", ("copy", "contiguous", "to_dtype", "clone", "cat", "_to_copy")))


def _op_breakdown(name: str, steps: int, quick: bool = False) -> dict:
    """Where a training step of the default setting (bf16 + channels_last on bf16 CPUs) spends its time:
    the share of self CPU time per group of operators, from ``torch.profiler`` over a few steps."""
    from torch.profiler import ProfilerActivity, profile

    from hwlib.vision.train import bf16_native

    model, loss_fn, x, y = _train_setup(name, (4 if quick else 16) if name.startswith("detector") else (16 if quick else 32))
    prec = "bf16" if bf16_native() else "fp32"
    _time_train(model, loss_fn, x, y, prec, prec == "bf16", 1)             # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _time_train(model, loss_fn, x, y, prec, prec == "bf16", steps)
    self_us = {}
    for ev in prof.key_averages():
        if ev.key.startswith("aten::") or ev.key.startswith("mkldnn") or "Optimizer" in ev.key:
            self_us[ev.key] = self_us.get(ev.key, 0.0) + ev.self_cpu_time_total
    total = sum(self_us.values()) or 1.0
    groups = {g: 0.0 for g, _ in OP_GROUPS}
    groups["other"] = 0.0
    for key, us in self_us.items():
        g = next((g for g, pats in OP_GROUPS if any(p in key.lower() for p in pats)), "other")
        groups[g] += us / total
    top = sorted(self_us.items(), key=lambda kv: -kv[1])[:6]
    return {"precision": prec, "groups": groups, "top_ops": {k: v / total for k, v in top}}


def _matmul_gflops(dtype, n: int, reps: int) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


SETTINGS = (("fp32", "fp32", False), ("bf16", "bf16", False), ("channels_last", "fp32", True),
            ("bf16+channels_last", "bf16", True))
NO_BF16 = ("no native bf16 on this CPU (neither AVX512-BF16 nor AMX): autocast would emulate bf16 in software, "
           "an order of magnitude slower than fp32, so training runs in fp32 here")


def bench_settings(bf16: bool, quick: bool, group: str) -> tuple[list, dict]:
    """The settings a worker times, ``[(name, precision, channels_last)]``, and those skipped with the reason.

    bf16 settings are timed only where the CPU computes bf16 natively (``bf16``); elsewhere they are
    skipped, not measured: emulated bf16 is what the training loop never uses there. ``--quick`` keeps,
    in the allocator groups other than ``default``, only plain fp32 and the fastest native setting."""
    settings = [s for s in SETTINGS if bf16 or s[1] == "fp32"]
    if quick and group != "default":
        settings = [settings[0], settings[-1]]
    skipped = {} if bf16 else {s[0]: NO_BF16 for s in SETTINGS if s[1] == "bf16"}
    return settings, skipped


def worker(group: str, quick: bool) -> dict:
    """Measure every workload under this process's allocator; returns {workload: {setting: img/s}}."""
    from hwlib.vision.train import bf16_native, cpu_kind

    torch.manual_seed(0)
    bf16 = bf16_native()
    settings, skipped = bench_settings(bf16, quick, group)
    res = {"_meta": {"group": group, "bf16_native": bf16, "amx": cpu_kind() == "amx", "skipped": skipped}}
    steps = 1 if quick else 6
    workloads = TRAIN_WORKLOADS if not quick else ("detector_train", "heatmap_train", "regression_train")
    best_native = settings[-1]
    for name in workloads:
        batch = (4 if quick else 16) if name.startswith("detector") else (16 if quick else 32)
        model, loss_fn, x, y = _train_setup(name, batch)
        entry = {}
        if group == "default":
            entry["_gflop_per_img"] = _flops_per_image(model, loss_fn, x, y) / 1e9
        for sname, prec, cl in settings:
            entry[sname] = _time_train(model, loss_fn, x, y, prec, cl, steps)[0]
            print(f"  [{group}] {name:20s} {sname:20s} {entry[sname]:8.1f} img/s", file=sys.stderr, flush=True)
        if group == "default" and not quick:
            ips, cs = _time_train(model, loss_fn, x, y, best_native[1], best_native[2], steps, compile_=True)
            entry[f"{best_native[0]}+compile"], entry["_compile_seconds"] = ips, cs
            print(f"  [{group}] {name:20s} {'+compile':20s} {ips:8.1f} img/s (compile {cs:.0f} s)", file=sys.stderr, flush=True)
            torch._dynamo.reset()
            if not bf16 and name == "detector_train":
                # once, one timed step (after two warm-up steps): what emulated bf16 costs here, why it is skipped
                entry["_emulated_bf16_img_s"] = _time_train(model, loss_fn, x[:4], y[:4], "bf16", True, 1)[0]
                print(f"  [{group}] {name:20s} {'emulated bf16':20s} {entry['_emulated_bf16_img_s']:8.2f} img/s",
                      file=sys.stderr, flush=True)
        res[name] = entry
    if group == "default":
        res["_profile"] = {name: _op_breakdown(name, 1 if quick else 4, quick) for name in ("detector_train", "heatmap_train")}
        res.update(_other_workloads(quick, bf16))
        n = 2048 if quick else 4096
        res["_peak"] = {"fp32_matmul_gflops": _matmul_gflops(torch.float32, n, 3 if quick else 10)}
        if bf16:
            res["_peak"]["bf16_matmul_gflops"] = _matmul_gflops(torch.bfloat16, n, 3 if quick else 10)
    return res


def _other_workloads(quick: bool, bf16: bool) -> dict:
    from hwlib.config import DetectorConfig
    from hwlib.vision.data import make_detection_data, make_keypoint_data
    from hwlib.vision.detector import MultiScaleDetector, decode_predictions, images_to_input
    from hwlib.vision.metrics import evaluate_detections, pck

    out = {}
    n = 100 if quick else 400
    t0 = time.perf_counter()
    images, targets = make_detection_data(n, seed=1)
    out["data_detection"] = {"numpy": n / (time.perf_counter() - t0)}
    t0 = time.perf_counter()
    make_keypoint_data(4 * n, seed=1)
    out["data_keypoint"] = {"numpy": 4 * n / (time.perf_counter() - t0)}
    model = MultiScaleDetector().eval()
    x = images_to_input(images[:16])
    infer = {}
    for sname, prec, cl in (("fp32", "fp32", False), ("bf16+channels_last", "bf16", True))[:2 if bf16 else 1]:
        m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        xx = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            m(xx)
            t0 = time.perf_counter()
            reps = 1 if quick else 3
            for _ in range(reps):
                decode_predictions(tuple(o.float() for o in m(xx)), conf_threshold=0.001)
        infer[sname] = 16 * reps / (time.perf_counter() - t0)
    out["detector_infer"] = infer
    # evaluation: AP over 1,000 images (synthetic detections around the ground truth), PCK over 10,000 samples
    g = torch.Generator().manual_seed(0)
    tg = [targets[i % len(targets)] for i in range(1000)]
    preds = []
    for t in tg:
        k = len(t["labels"])
        b = t["boxes"] + torch.randn(k, 4, generator=g) * 3
        b = torch.cat([torch.minimum(b[:, :2], b[:, 2:]), torch.maximum(b[:, :2], b[:, 2:])], 1)
        extra = torch.rand(20, 4, generator=g) * 200
        extra = torch.cat([extra[:, :2], extra[:, :2] + 5 + extra[:, 2:] / 4], 1)
        preds.append({"boxes": torch.cat([b, extra]), "scores": torch.rand(k + 20, generator=g),
                      "labels": torch.cat([t["labels"], torch.randint(0, 3, (20,), generator=g)])})
    t0 = time.perf_counter()
    evaluate_detections(preds, tg)
    out["evaluate_ap_1000"] = {"numpy": 1000 / (time.perf_counter() - t0)}
    gt = torch.rand(10000, 5, 2, generator=g) * 128
    t0 = time.perf_counter()
    pck(gt + torch.randn(10000, 5, 2, generator=g), gt)
    out["evaluate_pck_10000"] = {"torch": 10000 / (time.perf_counter() - t0)}
    return out


def summarize_workers(raw: dict, quick: bool) -> dict:
    """The benchmark record from the workers' raw output ``{group: {workload: {setting: img/s, "_...": extra}}}``:
    per workload every setting (``"<setting>+<group>"`` outside the default allocator), the plain fp32 eager
    baseline, the fastest setting and its speed-up, GFLOP/s and share of the matmul peak of the precision this
    CPU trains in; the CPU kind, the settings skipped and why, and emulated bf16 where the full benchmark timed it.
    Pure: the same raw output gives the same record on any machine."""
    raw = json.loads(json.dumps(raw))                      # never modify the caller's dicts
    base = raw["default"]
    peak = base.pop("_peak")
    op_profile = base.pop("_profile")
    meta = base.pop("_meta")
    peak_key = "bf16_matmul_gflops" if meta["bf16_native"] else "fp32_matmul_gflops"
    kind = ("amx" if meta.get("amx") else "avx512_bf16") if meta["bf16_native"] else "fp32-only"
    result = {"quick": quick, "cpu_kind": kind, "bf16_native": meta["bf16_native"],
              "skipped": meta["skipped"], "peak_used": peak_key.split("_")[0]}
    emulated = base.get("detector_train", {}).get("_emulated_bf16_img_s")
    if emulated is not None:
        result["emulated_bf16"] = {"detector_train_img_s": emulated, "timed_steps": 1}
    for name, entry in base.items():
        if name.startswith("_"):
            continue
        settings = {}
        for group, data in raw.items():
            for sname, v in data.get(name, {}).items():
                if not sname.startswith("_"):
                    settings[sname if group == "default" else f"{sname}+{group}"] = v
        fp32 = settings["fp32"] if "fp32" in settings else settings.get("numpy", settings.get("torch"))
        if fp32 is None:
            raise SystemExit(f"benchmark workload {name!r} has no baseline setting (fp32, numpy or torch)")
        best = max(settings, key=settings.get)
        w = {"fp32_eager_img_s": fp32, "settings": settings, "best_setting": best, "best_img_s": settings[best],
             "speedup": settings[best] / fp32}
        if "_gflop_per_img" in entry:
            w["gflop_per_img"] = entry["_gflop_per_img"]
            w["best_gflops"] = entry["_gflop_per_img"] * settings[best]
            w["share_of_peak"] = w["best_gflops"] / peak[peak_key]
        if "_compile_seconds" in entry:
            w["compile_seconds"] = entry["_compile_seconds"]
        result[name] = w
    result["peak"] = peak
    result["profile_breakdown"] = op_profile
    return result


# ----------------------------------------------------------------------------- orchestration
def run(quick: bool = False, profile: str = "cpu") -> dict:
    from hwlib.config import load_profile
    from hwlib.study.machine import machine_info
    from hwlib.study.report import tex_escape, write_results, write_table

    P = load_profile(profile)
    groups = {"default": {}, "glibc": {"GLIBC_TUNABLES": GLIBC}}
    tc = None if quick else _tcmalloc()          # --quick: the default allocator and make's glibc setting only
    if tc:
        groups["tcmalloc"] = {"LD_PRELOAD": tc}
    raw = {}
    t_start = time.perf_counter()
    for group, env_add in groups.items():
        env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
        env.update(env_add)
        print(f"worker '{group}' ...", flush=True)
        cmd = [sys.executable, "-m", "hwlib.bench", "--worker", group] + (["--quick"] if quick else [])
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise SystemExit(f"benchmark worker '{group}' failed (exit {r.returncode})")
        raw[group] = json.loads(r.stdout.strip().splitlines()[-1])
    result = {"profile": P.name, **summarize_workers(raw, quick)}
    result["accuracy_check"] = accuracy_check(quick)
    result["time_to_accuracy"] = time_to_accuracy(P)
    result["images_to_accuracy"] = images_to_accuracy(P)
    result["machine"] = machine_info()
    result["seconds"] = time.perf_counter() - t_start
    write_results(P.generated_dir, "benchmark", result, prefix="Bench", digits=3)
    rows = [[name, f"{w['fp32_eager_img_s']:.1f}", tex_escape(w["best_setting"]), f"{w['best_img_s']:.1f}", f"{w['speedup']:.2f}",
             f"{w['share_of_peak'] * 100:.0f}\\%" if "share_of_peak" in w else ""]
            for name, w in result.items() if isinstance(w, dict) and "fp32_eager_img_s" in w]
    write_table(P.generated_dir, "benchmark_table", ["workload", "fp32 eager", "fastest setting", "img/s", "speed-up",
                                                      f"of {result['peak_used']} peak"], rows, align="lrlrrr")
    _time_to_accuracy_figure(P)
    print(f"benchmark written to {P.generated_dir / 'benchmark.json'} ({result['seconds']:.0f} s)")
    return result


def refresh_accuracy(profile: str = "cpu") -> dict | None:
    """Update the time-to-accuracy part of an existing ``benchmark.json`` from the latest run of ``profile``
    (``time_to_accuracy``, ``images_to_accuracy``: from the run's validation logs and notebooks 02/04) and redraw
    the time-to-accuracy figure, keeping every throughput measurement as it was; the pipeline calls it after a
    run of the committed profile. ``None`` (nothing written) when there is no ``benchmark.json`` yet."""
    from hwlib.config import load_profile
    from hwlib.study.report import macro_settings, write_results

    P = load_profile(profile)
    path = P.generated_dir / "benchmark.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    result["time_to_accuracy"] = time_to_accuracy(P)
    result["images_to_accuracy"] = images_to_accuracy(P)
    prefix, digits = macro_settings(path.with_suffix(".tex")) or ("Bench", 3)
    write_results(P.generated_dir, "benchmark", result, prefix=prefix, digits=digits)
    _time_to_accuracy_figure(P)
    return result


def accuracy_check(quick: bool, seeds: int = 2) -> dict:
    """The default precision (bf16 autocast + channels_last where the CPU has native bf16) against plain
    fp32 on the same short schedule: the cheap ablation settings of the ``cpu`` profile (detector
    width 0.5, heatmap model with 16 base channels), ``seeds`` seeds each, evaluated on the profile's
    validation images. ``within_noise``: the difference of the means is at most two standard errors
    (pooled seed-to-seed std x sqrt(2 / seeds)); ``not_worse``: the default is at most two standard errors
    below fp32. ``quick`` runs the same code on the ``smoke`` settings."""
    from hwlib.config import load_profile
    from hwlib.study.splits import VAL_SEED, detection_data, keypoint_data
    from hwlib.study.detection import detection_metrics, predict_detector
    from hwlib.study.keypointing import predict_keypoints
    from hwlib.study.obtain import train_detector, train_keypoint_model
    from hwlib.vision.metrics import pck
    from hwlib.vision.train import resolve_precision

    default = resolve_precision("auto", torch.device("cpu"))
    if default == "fp32":
        return {"default_precision": default, "seeds": 0,
                "skipped": "the default precision on this CPU is fp32 itself: nothing to compare"}
    P = load_profile("smoke" if quick else "cpu")
    det, kpc = P.det_ablation, P.kp_ablation
    vi, vt = detection_data(det.n_val, VAL_SEED, det.size_mode, det.balanced_classes)
    ki, kk, _ = keypoint_data(kpc.n_val, VAL_SEED, kpc.hard_fraction)
    out = {"default_precision": default, "seeds": seeds,
           "detector": f"width {det.width}, {det.steps} steps", "heatmap": f"{kpc.base_channels} base channels, {kpc.steps} steps"}
    scores = {"detector_map50": {}, "heatmap_pck05": {}}
    for label, prec in (("fp32", "fp32"), ("default", "auto")):
        maps, pcks = [], []
        for s in range(seeds):
            m, _ = train_detector(det, seed=s, device="cpu", precision=prec, progress=False, validate=False)
            maps.append(detection_metrics(predict_detector(m, vi, det, device="cpu", precision=prec), vt, det)["map_standard"])
            m, _ = train_keypoint_model("heatmap", kpc, seed=s, device="cpu", precision=prec, progress=False, validate=False)
            pcks.append(pck(predict_keypoints(m, "heatmap", ki, kpc, device="cpu", precision=prec)["heatmap_dark"], kk)[0.05])
            print(f"  accuracy check {label:7s} seed {s}: mAP {maps[-1]:.3f}, PCK@0.05 {pcks[-1]:.3f}", flush=True)
        scores["detector_map50"][label], scores["heatmap_pck05"][label] = maps, pcks
    for key, sc in scores.items():
        a, b = np.asarray(sc["fp32"]), np.asarray(sc["default"])
        pooled = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)) if seeds > 1 else float("nan")
        diff = float(b.mean() - a.mean())
        se = pooled * math.sqrt(2 / seeds)                # standard error of the difference of the means
        out[key] = {"fp32": float(a.mean()), "default": float(b.mean()), "fp32_runs": a.tolist(), "default_runs": b.tolist(),
                    "difference": diff, "pooled_std": pooled, "within_noise": bool(abs(diff) <= 2 * se),
                    "not_worse": bool(diff >= -2 * se)}
    return out


def _histories(P):
    out = {}
    for name in ("02_histories.json", "04_histories.json"):
        p = P.run_dir / name
        if p.exists():
            out.update(json.loads(p.read_text()))
    return out


# run -> (metric, axis label, the reader's name of the model); the goal of each is ACCURACY_GOALS[run]
_GOAL_RUNS = {"seed_exact": ("map_standard", "mAP@0.5 (standard)", "original network"),
              "rf_aware": ("map_standard", "mAP@0.5 (standard)", "RF-aware network"),
              "heatmap": ("pck_0.05", "PCK@0.05", "heatmap model (DARK)")}


def _goal_keys() -> dict:
    """run -> the records' key of its time (``<key>_s``) and images to accuracy: ``detector_map50_0.85`` ..."""
    g = ACCURACY_GOALS
    return {"seed_exact": f"detector_map50_{g['detector']:g}", "rf_aware": f"rf_aware_map50_{g['rf_aware']:g}",
            "heatmap": f"heatmap_pck05_{g['heatmap']:g}"}


def _goal(run: str) -> float:
    return ACCURACY_GOALS["detector" if run == "seed_exact" else run]


def time_to_accuracy(P) -> dict:
    """Training seconds (evaluation excluded) to the report's accuracy goals (:data:`hwlib.config.ACCURACY_GOALS`),
    from the cpu run's logs (or, without them, from the committed results)."""
    hist = _histories(P)
    out = {}
    for run, key in _goal_keys().items():
        t = History.from_dict(hist[run]).first_reaching(_GOAL_RUNS[run][0], _goal(run)) if run in hist else None
        out[key + "_s"] = t if t is not None else float("nan")
    return out if hist else _recorded(P, "time_to_accuracy", out)


def images_to_accuracy(P) -> dict:
    """Training images (steps x batch, machine-independent) to the report's accuracy goals, as notebooks 02 and
    04 recorded them from seed 0's validation log (SPEC §7 keys; NaN where a goal was not reached or not run)."""
    return _recorded(P, "images_to_accuracy", dict.fromkeys(_goal_keys().values(), float("nan")))


def _recorded(P, field: str, out: dict) -> dict:
    """``out`` updated with the values of its keys that notebooks 02 and 04 recorded under ``field``."""
    for name in ("02_detector_training", "04_keypoint_training"):
        p = P.generated_dir / f"{name}.json"
        if p.exists():
            out.update({k: v for k, v in json.loads(p.read_text()).get(field, {}).items() if k in out})
    return out


def _time_to_accuracy_figure(P) -> None:
    from hwlib.study import plots

    hist = _histories(P)
    if not all(k in hist for k in _GOAL_RUNS):
        print("no training logs under runs/cpu: time-to-accuracy figure not redrawn")
        return
    curves = {}
    for run, (metric, ylabel, label) in _GOAL_RUNS.items():
        ev = hist[run]["evals"]
        curves[label] = ([e["seconds"] for e in ev], [e[metric] for e in ev], _goal(run), ylabel)
    plots.time_to_accuracy(curves, P.figures_dir / "07_time_to_accuracy.pdf")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and settings, under 2 minutes")
    ap.add_argument("--profile", default="cpu", help="where to write (cpu: report/generated; else runs/<profile>/)")
    ap.add_argument("--refresh-accuracy", action="store_true",
                    help="only update time/images to accuracy in an existing benchmark.json from the latest run")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.refresh_accuracy:
        res = refresh_accuracy(args.profile)
        print("no benchmark.json to refresh: run python -m hwlib.bench first" if res is None else
              f"time and images to accuracy refreshed: {res['images_to_accuracy']}")
        return 0
    if args.worker:
        torch.set_num_threads(os.cpu_count() or 1)
        res = worker(args.worker, args.quick)
        sys.stdout.flush()
        print(json.dumps(res))
        return 0
    run(args.quick, args.profile)
    return 0
