"""Retrain stored runs and compare them with their store files.

::

    python -m hwlib.verify NAME [NAME ...]     # runs by name (e.g. 02_seed_exact_s0 04_heatmap_s0)
    python -m hwlib.verify --sample K          # K runs drawn at random (--seed) from the store
    python -m hwlib.verify --list              # what the store holds

Each run is trained again from its stored config and seed (nothing is written to the store), every stored evaluation
is made again from the retrained weights, and stored and retrained values are printed side by side. A run is
judged by what it **reports**: its test metrics and its final validation value. The verdict:

- **identical**: every number equal to the last bit, the validation curve and every evaluation's tables included
  (expected where the CPU kind, device and precision are the stored run's);
- **within tolerance** (printed "reproduced within tolerance"), accepted only where the machine differs (another
  CPU kind, bf16 against fp32, a GPU: their arithmetic differs, and bf16 trajectories part ways and meet again):
  every reported value within its tolerance, the **seed-to-seed spread** of that value (the standard deviation over
  the stored seeds of the same config, :func:`seed_tolerance`; :data:`TOLERANCE` where fewer than two seeds are
  stored; ``--tolerance`` instead). The curve's largest difference is printed beside the verdict, not judged;
- **differs**: otherwise (exit code 1).

The store is the profile's (``--profile``, default ``cpu``: ``results/runs/``) or ``--store DIR``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import random
import sys
import tempfile
from pathlib import Path

from hwlib.config import load_profile

TOLERANCE = 0.02          # where fewer than two seeds of a run's config are stored (a metric in [0, 1])
MIN_TOLERANCE = 0.001     # a spread of 0 (every seed at 0.000) still allows rounding of another machine
HEADLINE = {"detector": ("map_standard", "map_seed"), "keypoint": ("pck_0.05", "pck_0.2", "mean_px_error")}


def config_of(data: dict):
    """The config dataclass of a stored run (lists back to tuples; fields the run did not read take defaults)."""
    from hwlib.study.checkpoints import TASK_CONFIGS, _tuples

    cls = TASK_CONFIGS[data["task"]]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data["config"]) - names)
    if unknown:
        raise ValueError(f"stored run {data['name']} has config keys unknown to {cls.__name__}: {unknown}")
    return cls(**{k: _tuples(v) for k, v in data["config"].items()})


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, str(i)))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield ".".join(path), float(obj)


def compare(stored: dict, fresh: dict) -> dict:
    """``{"n", "equal", "max_abs", "worst"}`` over the numeric leaves both dicts have (NaN equals NaN). Counts are
    not metrics: a leaf named ``*rank`` (a box's rank in its image, in a stored diagnosis) counts for ``equal`` but not
    for ``max_abs``, which the tolerance of another machine applies to."""
    a, b = dict(_leaves(stored)), dict(_leaves(fresh))
    common = sorted(set(a) & set(b))
    diffs = {}
    for k in common:
        x, y = a[k], b[k]
        diffs[k] = 0.0 if (x == y or (math.isnan(x) and math.isnan(y))) else abs(x - y)
    metric = {k: d for k, d in diffs.items() if not k.rsplit(".", 1)[-1].endswith("rank")}
    worst = max(metric, key=metric.get) if metric else None
    return {"n": len(common), "equal": all(d == 0.0 for d in diffs.values()) and set(a) == set(b),
            "max_abs": metric[worst] if worst else 0.0, "worst": worst, "missing": sorted(set(a) ^ set(b))}


def retrain(data: dict, device: str = "auto", precision: str = "auto", progress: bool = True):
    """Train the stored run ``data`` again (a scratch folder, no store); returns ``(model, History)``."""
    from hwlib.study import detection, keypointing
    from hwlib.study.lock import training_slot

    cfg, seed, validate = config_of(data), data["seed"], bool(data["history"].get("evals"))
    with tempfile.TemporaryDirectory(prefix="hwlib-verify-") as tmp, training_slot(f"verify {data['name']}"):
        ckpt = Path(tmp) / "run.pt"
        if data["task"] == "detector":
            return detection._train_detector(cfg, seed, ckpt, data["name"], device, precision, progress, validate)
        return keypointing._train_keypoint_model(data["method"], cfg, seed, ckpt, data["name"], cfg.steps_of(data["method"]),
                                        device, precision, progress, validate)


def evaluate_again(data: dict, model, device: str = "auto", precision: str = "auto") -> dict:
    """``{evaluation key: metrics}`` of every stored evaluation made again with ``model`` (same specs)."""
    from hwlib.study import detection, keypointing
    from hwlib.study.store import evaluation_key

    cfg = config_of(data)
    specs = [copy.deepcopy(e["spec"]) for e in data["evaluations"].values()]
    # analyses stored with the run (Runs.analysis) beside its metric evaluations: made by their own evaluator
    analyses = {"positives": detection.evaluate_positives}
    unknown = sorted({s["kind"] for s in specs} - {data["task"]} - set(analyses))
    if unknown:
        raise ValueError(f"stored run {data['name']} has evaluations of a kind verify cannot make again: {unknown}")
    out = {evaluation_key(s): analyses[s["kind"]](model, cfg, s) for s in specs if s["kind"] in analyses}
    specs = [s for s in specs if s["kind"] == data["task"]]
    if data["task"] == "detector":
        for s in specs:
            s["decoding"] = {k: tuple(v) if isinstance(v, list) else v for k, v in s["decoding"].items()}
        results = detection._evaluate_detector(model, cfg, specs, device, precision)
    else:
        results = keypointing._evaluate_keypoints(model, data["method"], cfg, specs, device, precision)
    return {**out, **{evaluation_key(s): m for s, (m, _) in zip(specs, results)}}


def reported(data: dict, evaluations: dict, evals: list) -> list:
    """``[(label, value)]``: what a run reports, the values it is judged by: each metric evaluation's
    :data:`HEADLINE` metrics (``evaluations``: ``{evaluation key: metrics}``) and the final validation value of
    each (``evals``: the validation log)."""
    out = []
    for k, e in data["evaluations"].items():
        if e["spec"].get("kind") != data["task"]:
            continue                                                # a stored analysis, not a reported metric
        for m in HEADLINE[data["task"]]:
            if m in e["metrics"] and k in evaluations:
                out.append((f"test {m} ({e['spec'].get('split')}, n={e['spec'].get('n')})", evaluations[k][m]))
    if evals:
        for m in HEADLINE[data["task"]]:
            if m in evals[-1]:
                out.append((f"validation {m}, last step", evals[-1][m]))
    return out


def seed_tolerance(data: dict, store=None, default: float = TOLERANCE) -> dict:
    """``{label: tolerance}`` of each :func:`reported` value of the stored run ``data``: the standard deviation of
    that value over the stored seeds of the same task, method, config and code (this run's seed included), at
    least :data:`MIN_TOLERANCE`; ``default`` (scaled by the value where it exceeds 1, a pixel error) where fewer than
    two seeds are stored."""
    import statistics

    mine = dict(reported(data, {k: e["metrics"] for k, e in data["evaluations"].items()},
                         data["history"].get("evals", [])))
    values: dict = {label: [v] for label, v in mine.items()}
    for r in store.records() if store is not None else []:
        d = r.data
        if (d["seed"] == data["seed"] or d["task"] != data["task"] or d["method"] != data["method"]
                or d["config"] != data["config"] or d["code"] != data["code"]):
            continue
        theirs = dict(reported(data, {k: d["evaluations"][k]["metrics"] for k in data["evaluations"]
                                      if k in d["evaluations"]}, d["history"].get("evals", [])))
        for label, v in theirs.items():
            if label in values and not math.isnan(v):
                values[label].append(v)
    return {label: (max(MIN_TOLERANCE, statistics.stdev(vs)) if len(vs) >= 2
                    else default * max(1.0, abs(mine[label])))
            for label, vs in values.items()}


def verify(rec, tolerance: float | None = None, device: str = "auto", precision: str = "auto",
           progress: bool = True, store=None) -> dict:
    """Retrain one stored run (:class:`~hwlib.study.store.RunRecord`) and compare: every number, and the values it
    reports (:func:`reported`) against their tolerance (``tolerance``, or each value's seed-to-seed spread among
    the runs of ``store``: :func:`seed_tolerance`). Returns ``{"name", "verdict", "same_machine", "max_abs",
    "reported": [(label, stored, retrained, tolerance)], "validation", "evaluations", "table", "stored_seconds",
    "seconds", "machine", "stored_machine", "precision", ...}``."""
    from hwlib.study.codes import eval_code, training_code
    from hwlib.study.machine import machine_record
    from hwlib.study.store import untimed_evals
    from hwlib.vision.train import pick_device, resolve_precision

    data = rec.data
    model, hist = retrain(data, device, precision, progress)
    fresh_evals = evaluate_again(data, model, device, precision)
    here, prec = machine_record(), resolve_precision(precision, pick_device(device))
    stored_machine = data.get("machine", {})
    # bits repeat where the arithmetic is the same: CPU kind, GPU, precision, threads (oneDNN splits work by them)
    # and torch (its kernels); a record without threads or torch is taken at its word on the rest
    same = (all(here.get(k) == stored_machine.get(k) for k in ("cpu_kind", "gpu"))
            and all(here.get(k) == stored_machine[k] for k in ("threads", "torch") if k in stored_machine)
            and prec == data.get("precision"))
    # the validation log's seconds are timings: left out of the comparison
    val = compare({"evals": untimed_evals(data["history"].get("evals", []))},
                  {"evals": untimed_evals(hist.to_dict()["evals"])})
    evs = {k: compare(e["metrics"], fresh_evals[k]) for k, e in data["evaluations"].items()}
    tol = (seed_tolerance(data, store) if tolerance is None
           else {label: tolerance for label, _ in reported(data, fresh_evals, hist.evals)})
    stored_vals = dict(reported(data, {k: e["metrics"] for k, e in data["evaluations"].items()},
                                data["history"].get("evals", [])))
    rows = [(label, stored_vals.get(label, math.nan), v, tol.get(label, math.nan))
            for label, v in reported(data, fresh_evals, hist.evals)]
    table = [(label, a, b) for label, a, b, _ in rows]
    table.append(("training seconds", data.get("train_seconds", math.nan), hist.train_seconds))
    all_equal = val["equal"] and all(c["equal"] for c in evs.values())
    within = bool(rows) and all(abs(b - a) <= t for _, a, b, t in rows)
    verdict = "identical" if all_equal else ("within tolerance" if (not same and within) else "differs")
    worst = max([0.0, *(abs(b - a) for _, a, b, _ in rows if not (math.isnan(a) and math.isnan(b)))])
    return {"name": data["name"], "verdict": verdict, "same_machine": same, "max_abs": worst, "reported": rows,
            "validation": val, "evaluations": evs, "table": table, "stored_seconds": data.get("train_seconds"),
            "seconds": hist.train_seconds, "machine": here, "stored_machine": stored_machine, "precision": prec,
            "stored_precision": data.get("precision"), "code_now": training_code(data["task"]) == data["code"],
            "eval_code_now": all(e["spec"].get("code") == eval_code(e["spec"]["kind"]) for e in data["evaluations"].values())}


VERDICT_TEXT = {"identical": "identical (reproduced bit for bit)", "within tolerance": "reproduced within tolerance",
                "differs": "differs"}


def format_result(r: dict) -> str:
    m, sm = r["machine"], r["stored_machine"]
    lines = [f"{r['name']}: {VERDICT_TEXT[r['verdict']]} (largest difference of a reported value {r['max_abs']:.3g})",
             f"  stored : {sm.get('cpu', '?')} [{sm.get('cpu_kind', '?')}{', ' + sm['gpu'] if sm.get('gpu') else ''}],"
             f" {r['stored_precision']}",
             f"  now    : {m.get('cpu', '?')} [{m.get('cpu_kind', '?')}{', ' + m['gpu'] if m.get('gpu') else ''}],"
             f" {r['precision']}" + ("" if r["same_machine"] else "  (another machine kind: tolerance applies)")]
    if not r["code_now"]:
        lines.append("  note: the stored run was trained by other training code; the retrained run is today's code")
    width = max(len(row[0]) for row in r["table"])
    tol = {label: t for label, _, _, t in r["reported"]}
    lines.append(f"  {'':{width}s}  {'stored':>12s}  {'retrained':>12s}  {'difference':>11s}  {'tolerance':>9s}")
    for label, a, b in r["table"]:
        t = f"{tol[label]:9.4f}" if label in tol else f"{'':9s}"
        lines.append(f"  {label:{width}s}  {a:12.6f}  {b:12.6f}  {b - a:+11.2e}  {t}")
    lines.append(f"  beside the verdict, not judged: validation curve {r['validation']['n']} values, largest difference "
                 f"{r['validation']['max_abs']:.3g}; evaluations {sum(c['n'] for c in r['evaluations'].values())} "
                 f"values, largest difference {max([0.0, *(c['max_abs'] for c in r['evaluations'].values())]):.3g}")
    missing = sorted({m for c in (r["validation"], *r["evaluations"].values()) for m in c["missing"]})
    if missing:
        lines.append(f"  values on one side only: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    from hwlib.study.store import RunStore, StoreError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="stored run names (the newest record of each name)")
    ap.add_argument("--sample", type=int, metavar="K", help="verify K stored runs drawn at random")
    ap.add_argument("--seed", type=int, default=0, help="with --sample: the draw's seed")
    ap.add_argument("--list", action="store_true", help="list the stored runs and exit")
    ap.add_argument("--profile", default="cpu", help="whose store (default cpu: results/runs/)")
    ap.add_argument("--store", type=Path, help="a store folder instead of the profile's")
    ap.add_argument("--tolerance", type=float, default=None,
                    help="largest accepted difference of a reported value where the machine differs (default: its "
                         f"seed-to-seed spread in the store; {TOLERANCE} where fewer than two seeds are stored)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    P = load_profile(args.profile)
    store = RunStore(args.store or P.store)
    try:
        records = store.records()
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for r in sorted(records, key=lambda r: r.name):
            d = r.data
            print(f"{r.name:48s} {r.key[:12]}  {d.get('train_seconds', math.nan):8.0f} s  {d.get('device', '')}  "
                  f"{d.get('machine', {}).get('cpu_kind', '')}  {len(d['evaluations'])} evaluation(s)")
        print(f"{len(records)} runs in {store.root}")
        return 0
    if args.sample:
        chosen = random.Random(args.seed).sample(records, min(args.sample, len(records)))
    elif args.names:
        chosen = []
        for n in args.names:
            found = store.find(n)
            if not found:
                print(f"error: no stored run named {n!r} in {store.root} (--list shows them)", file=sys.stderr)
                return 2
            chosen.append(found[0])
    else:
        ap.error("name stored runs, or --sample K, or --list")
    bad = 0
    for rec in chosen:
        r = verify(rec, args.tolerance, P.device, P.precision, progress=not args.no_progress, store=store)
        print(format_result(r), flush=True)
        bad += r["verdict"] == "differs"
    return 1 if bad else 0
