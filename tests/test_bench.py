"""The benchmark: which settings a CPU kind measures, and the quick mode end to end on the no-native-bf16
path that an AVX2-only CPU takes (forced with HWLIB_BF16_NATIVE=0, so the test is the same on every CPU).
Speeds are not asserted: CI machines vary."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hwlib.study.bench import SETTINGS, bench_settings
from hwlib.config import REPO_ROOT, load_profile
from hwlib.vision.train import BF16_ENV, bf16_native, cpu_flags, cpu_kind, resolve_precision


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("group", ["default", "glibc"])
def test_no_native_bf16_measures_no_bf16_setting(quick, group):
    settings, skipped = bench_settings(False, quick, group)
    assert settings and all(prec == "fp32" for _, prec, _ in settings)
    assert set(skipped) == {"bf16", "bf16+channels_last"} and all("native bf16" in why for why in skipped.values())
    assert settings[0][0] == "fp32"                       # the baseline every speed-up is measured against


@pytest.mark.parametrize("quick", [False, True])
def test_native_bf16_measures_bf16_and_skips_nothing(quick):
    settings, skipped = bench_settings(True, quick, "default")
    assert skipped == {} and [s[0] for s in settings] == [s[0] for s in SETTINGS]
    settings, _ = bench_settings(True, quick, "glibc")
    names = [s[0] for s in settings]
    assert names[0] == "fp32" and "bf16+channels_last" in names
    assert len(names) == (2 if quick else len(SETTINGS))


def test_forcing_no_native_bf16_takes_the_fp32_path(monkeypatch):
    import torch

    monkeypatch.setenv(BF16_ENV, "0")
    assert not bf16_native() and cpu_kind() == "fp32-only"
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.delenv(BF16_ENV)
    assert (cpu_kind() == "fp32-only") == (not {"avx512_bf16", "amx_bf16"} & cpu_flags())


@pytest.mark.slow
def test_quick_benchmark_on_the_fp32_path_writes_valid_json():
    env = {**os.environ, BF16_ENV: "0"}
    r = subprocess.run([sys.executable, "-m", "hwlib.bench", "--quick", "--profile", "smoke"], cwd=REPO_ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:]
    data = json.loads((load_profile("smoke").generated_dir / "benchmark.json").read_text())
    assert data["profile"] == "smoke" and data["quick"] is True
    assert data["cpu_kind"] == "fp32-only" and data["bf16_native"] is False
    assert set(data["skipped"]) == {"bf16", "bf16+channels_last"}
    for w in ("detector_train", "heatmap_train", "regression_train"):
        entry = data[w]
        assert not any("bf16" in s for s in entry["settings"]), entry["settings"]   # nothing emulated was timed
        assert entry["fp32_eager_img_s"] == entry["settings"]["fp32"] > 0
        assert entry["best_img_s"] == max(entry["settings"].values())
        assert entry["speedup"] == pytest.approx(entry["best_img_s"] / entry["fp32_eager_img_s"])
        assert "channels_last+glibc" in entry["settings"]                 # the allocator worker ran too
    for w in ("data_detection", "data_keypoint", "detector_infer", "evaluate_ap_1000", "evaluate_pck_10000"):
        assert data[w]["best_img_s"] > 0
    assert data["detector_train"]["gflop_per_img"] > 1.0
    assert data["peak_used"] == "fp32" and "bf16_matmul_gflops" not in data["peak"]
    assert 0 < data["detector_train"]["share_of_peak"]
    assert set(data["time_to_accuracy"]) == {"detector_map50_0.85_s", "rf_aware_map50_0.95_s", "heatmap_pck05_0.95_s"}
    assert "cpu" in data["machine"] and data["machine"]["bf16_native"] is False
    for w in ("detector_train", "heatmap_train"):                      # the profiler's breakdown of a step
        groups = data["profile_breakdown"][w]["groups"]
        assert abs(sum(groups.values()) - 1) < 1e-6 and groups["convolution"] > 0
        assert data["profile_breakdown"][w]["precision"] == "fp32"
    assert "skipped" in data["accuracy_check"]                         # default == fp32: nothing to compare


# ----------------------------------------------------------------------------- the record, and the report that reads it
def _fake_worker_output(bf16: bool, quick: bool) -> dict:
    """What the workers print, in shape: a few speeds per setting the CPU runs natively."""
    groups = {"default": 1.0, "glibc": 1.1}
    raw = {}
    for group, f in groups.items():
        settings, skipped = bench_settings(bf16, quick, group)
        data = {"_meta": {"group": group, "bf16_native": bf16, "amx": False, "skipped": skipped}}
        for name, base in (("detector_train", 10.0), ("heatmap_train", 40.0), ("regression_train", 90.0)):
            data[name] = {s: base * f * (3.0 if prec == "bf16" else 1.0) * (1.2 if cl else 1.0) for s, prec, cl in settings}
            if group == "default":
                data[name]["_gflop_per_img"] = 5.0
        if group == "default":
            data["_profile"] = {w: {"precision": "bf16" if bf16 else "fp32",
                                    "groups": {"convolution": 0.7, "batch norm": 0.1, "ReLU": 0.05, "optimizer": 0.05,
                                               "upsampling": 0.05, "copies and layout": 0.05, "other": 0.0},
                                    "top_ops": {}} for w in ("detector_train", "heatmap_train")}
            data["data_detection"] = {"numpy": 300.0}
            data["detector_infer"] = {"fp32": 30.0, **({"bf16+channels_last": 90.0} if bf16 else {})}
            data["_peak"] = {"fp32_matmul_gflops": 100.0, **({"bf16_matmul_gflops": 800.0} if bf16 else {})}
            if not quick and not bf16:
                data["detector_train"]["_emulated_bf16_img_s"] = 0.4
        raw[group] = data
    return raw


@pytest.mark.parametrize("bf16", [True, False])
def test_record_from_worker_output(bf16):
    from hwlib.study.bench import summarize_workers

    raw = _fake_worker_output(bf16, quick=False)
    rec = summarize_workers(raw, quick=False)
    det = rec["detector_train"]
    assert rec["cpu_kind"] == ("avx512_bf16" if bf16 else "fp32-only") and rec["bf16_native"] is bf16
    assert det["fp32_eager_img_s"] == 10.0
    assert det["best_setting"] == ("bf16+channels_last+glibc" if bf16 else "channels_last+glibc")
    assert det["speedup"] == pytest.approx(det["best_img_s"] / 10.0)
    assert det["share_of_peak"] == pytest.approx(5.0 * det["best_img_s"] / (800.0 if bf16 else 100.0))
    assert rec["peak_used"] == ("bf16" if bf16 else "fp32")
    assert ("emulated_bf16" in rec) is (not bf16) and rec["data_detection"]["fp32_eager_img_s"] == 300.0
    assert "_meta" in raw["default"]                            # the caller's dicts are left alone


def _defined_macros(tex_files) -> set:
    out = set()
    for f in tex_files:
        out |= set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", Path(f).read_text()))
    return out


def unguarded_macros(tex: str, prefix: str) -> set:
    """Macros starting with ``prefix`` that report.tex expands outside every ``\\ifdefined ... \\fi``
    (other conditionals, ``\\ifcsname`` or ``\\ifdim``, nest but guard nothing)."""
    text = "\n".join(re.sub(r"(?<!\\)%.*", "", line) for line in tex.splitlines())
    stack, out = [], set()
    for m in re.finditer(r"\\(if[a-z]+)(?![A-Za-z])|\\fi(?![A-Za-z])|\\([A-Za-z]+)", text):
        if m.group(1):
            stack.append(m.group(1) == "ifdefined")
        elif m.group(0) == "\\fi":
            if stack:
                stack.pop()
        elif not any(stack) and m.group(2).startswith(prefix):
            out.add(m.group(2))
    return out


def test_unguarded_macros_scanner():
    tex = r"\ifcsname X\endcsname\BenchA\fi \ifdefined\BenchB \BenchB\ifdim1pt>0pt\BenchC\fi\fi \BenchD"
    assert unguarded_macros(tex, "Bench") == {"BenchA", "BenchD"}


@pytest.mark.parametrize("bf16", [True, False])
def test_report_speed_section_builds_on_every_cpu_kind(bf16, tmp_path):
    """Every benchmark macro the report expands unconditionally exists for a bf16 and for an fp32-only CPU."""
    from hwlib.study.bench import summarize_workers
    from hwlib.study.report import write_results

    rec = summarize_workers(_fake_worker_output(bf16, quick=True), quick=True)
    rec.update(profile="smoke", accuracy_check={"default_precision": "fp32", "seeds": 0, "skipped": "fp32"},
               time_to_accuracy={}, machine={"cpu": "x"}, seconds=1.0)
    write_results(tmp_path, "benchmark", rec, prefix="Bench")
    used = unguarded_macros((REPO_ROOT / "report" / "report.tex").read_text(), "Bench")
    assert used, "the scanner found no benchmark macro in report.tex"
    missing = used - _defined_macros([tmp_path / "benchmark.tex"])
    assert not missing, f"report.tex expands undefined macros on a {'bf16' if bf16 else 'fp32-only'} CPU: {sorted(missing)}"


def test_committed_results_define_every_macro_the_report_expands():
    gen = REPO_ROOT / "report" / "generated"
    files = sorted(gen.glob("*.tex"))
    prefixes = {m for f in files for m in re.findall(r"^% prefix=([A-Za-z]+)", f.read_text(), re.M)}
    assert {"Bench", "Pipe", "Det", "Kp"} <= prefixes
    defined = _defined_macros(files)
    tex = (REPO_ROOT / "report" / "report.tex").read_text()
    missing = {m for p in prefixes for m in unguarded_macros(tex, p)} - defined
    assert not missing, f"report.tex expands macros the committed results do not define: {sorted(missing)}"


def test_refresh_accuracy_updates_only_the_accuracy_part(tmp_path, monkeypatch):
    """After a run, time/images to accuracy come from that run's results; every throughput number is kept."""
    import json
    import types

    import hwlib.study.bench as bench
    import hwlib.config as config
    from hwlib.study.report import write_results

    gen = tmp_path / "generated"
    gen.mkdir()
    P = types.SimpleNamespace(name="cpu", generated_dir=gen, run_dir=tmp_path / "run", figures_dir=tmp_path / "fig")
    monkeypatch.setattr(config, "load_profile", lambda name: P)
    assert bench.refresh_accuracy("cpu") is None, "no benchmark.json: nothing to refresh"
    write_results(gen, "benchmark", {"profile": "cpu", "detector_train": {"best_img_s": 49.3},
                                     "images_to_accuracy": {"heatmap_pck05_0.95": 13000.0}}, prefix="Bench")
    write_results(gen, "04_keypoint_training", {"profile": "cpu", "images_to_accuracy": {"heatmap_pck05_0.95": 6400},
                                                "time_to_accuracy": {"heatmap_pck05_0.95_s": 80.0}}, prefix="Kp")
    bench.refresh_accuracy("cpu")
    out = json.loads((gen / "benchmark.json").read_text())
    assert out["detector_train"] == {"best_img_s": 49.3}
    assert out["images_to_accuracy"]["heatmap_pck05_0.95"] == 6400
    assert out["time_to_accuracy"]["heatmap_pck05_0.95_s"] == 80.0
    assert "\\newcommand{\\BenchImagesToAccuracyHeatmapPckZeroFiveZeroNineFive}{6{,}400}" in (gen / "benchmark.tex").read_text()
