"""Retrain stored runs and compare them with their store files.

::

    python -m hwlib.verify NAME [NAME ...]     # runs by name (e.g. 02_seed_exact_s0 04_heatmap_s0)
    python -m hwlib.verify --sample K          # K runs drawn at random (--seed) from the store
    python -m hwlib.verify --list              # what the store holds

Each run is trained again from its stored config and seed (nothing is written to the store), every stored evaluation
is made again from the retrained weights, and stored and retrained values are printed side by side. The verdict:

- **identical**: every number equal to the last bit (expected where the CPU kind, device and precision are the
  stored run's);
- **within tolerance**: the largest difference of a metric is at most ``--tolerance`` (default 0.02), accepted only
  where the machine differs (another CPU kind, bf16 against fp32, a GPU): their arithmetic differs;
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

from .config import load_profile

TOLERANCE = 0.02
HEADLINE = {"detector": ("map_standard", "map_seed"), "keypoint": ("pck_0.05", "pck_0.2", "mean_px_error")}


def config_of(data: dict):
    """The config dataclass of a stored run (lists back to tuples; fields the run did not read take defaults)."""
    from .checkpoints import TASK_CONFIGS, _tuples

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
    from . import experiments as ex

    cfg, seed, validate = config_of(data), data["seed"], bool(data["history"].get("evals"))
    with tempfile.TemporaryDirectory(prefix="hwlib-verify-") as tmp:
        ckpt = Path(tmp) / "run.pt"
        if data["task"] == "detector":
            return ex._train_detector(cfg, seed, ckpt, data["name"], device, precision, progress, validate)
        return ex._train_keypoint_model(data["method"], cfg, seed, ckpt, data["name"], cfg.steps_of(data["method"]),
                                        device, precision, progress, validate)


def evaluate_again(data: dict, model, device: str = "auto", precision: str = "auto") -> dict:
    """``{evaluation key: metrics}`` of every stored evaluation made again with ``model`` (same specs)."""
    from . import experiments as ex
    from .store import evaluation_key

    cfg = config_of(data)
    specs = [copy.deepcopy(e["spec"]) for e in data["evaluations"].values()]
    # analyses stored with the run (Runs.analysis) beside its metric evaluations: made by their own evaluator
    analyses = {"positives": ex.evaluate_positives}
    unknown = sorted({s["kind"] for s in specs} - {data["task"]} - set(analyses))
    if unknown:
        raise ValueError(f"stored run {data['name']} has evaluations of a kind verify cannot make again: {unknown}")
    out = {evaluation_key(s): analyses[s["kind"]](model, cfg, s) for s in specs if s["kind"] in analyses}
    specs = [s for s in specs if s["kind"] == data["task"]]
    if data["task"] == "detector":
        for s in specs:
            s["decoding"] = {k: tuple(v) if isinstance(v, list) else v for k, v in s["decoding"].items()}
        results = ex._evaluate_detector(model, cfg, specs, device, precision)
    else:
        results = ex._evaluate_keypoints(model, data["method"], cfg, specs, device, precision)
    return {**out, **{evaluation_key(s): m for s, (m, _) in zip(specs, results)}}


def verify(rec, tolerance: float = TOLERANCE, device: str = "auto", precision: str = "auto",
           progress: bool = True) -> dict:
    """Retrain one stored run (:class:`~hwlib.store.RunRecord`) and compare: its validation log and every
    evaluation. Returns ``{"name", "verdict", "same_machine", "validation", "evaluations", "table",
    "stored_seconds", "seconds", "machine", "stored_machine", "precision"}``."""
    from .experiments import eval_code, training_code
    from .machine import machine_record
    from .store import untimed_evals
    from .train import pick_device, resolve_precision

    data = rec.data
    model, hist = retrain(data, device, precision, progress)
    fresh_evals = evaluate_again(data, model, device, precision)
    here, prec = machine_record(), resolve_precision(precision, pick_device(device))
    stored_machine = data.get("machine", {})
    same = (here.get("cpu_kind") == stored_machine.get("cpu_kind") and here.get("gpu") == stored_machine.get("gpu")
            and prec == data.get("precision"))
    # the validation log's seconds are timings: left out of the comparison
    val = compare({"evals": untimed_evals(data["history"].get("evals", []))},
                  {"evals": untimed_evals(hist.to_dict()["evals"])})
    evs = {k: compare(e["metrics"], fresh_evals[k]) for k, e in data["evaluations"].items()}
    rows = []
    for k, e in data["evaluations"].items():
        for m in HEADLINE[data["task"]]:
            if m in e["metrics"]:
                rows.append((f"test {m} ({e['spec'].get('split')}, n={e['spec'].get('n')})", e["metrics"][m],
                             fresh_evals[k][m]))
    if data["history"].get("evals"):
        last_s, last_f = data["history"]["evals"][-1], hist.evals[-1]
        for m in HEADLINE[data["task"]][:1]:
            rows.append((f"validation {m}, last step", last_s.get(m, math.nan), last_f.get(m, math.nan)))
    rows.append(("training seconds", data.get("train_seconds", math.nan), hist.train_seconds))
    worst = max([val["max_abs"], *(c["max_abs"] for c in evs.values())])
    all_equal = val["equal"] and all(c["equal"] for c in evs.values())
    verdict = "identical" if all_equal else ("within tolerance" if (not same and worst <= tolerance) else "differs")
    return {"name": data["name"], "verdict": verdict, "same_machine": same, "max_abs": worst, "validation": val,
            "evaluations": evs, "table": rows, "stored_seconds": data.get("train_seconds"),
            "seconds": hist.train_seconds, "machine": here, "stored_machine": stored_machine, "precision": prec,
            "stored_precision": data.get("precision"), "code_now": training_code(data["task"]) == data["code"],
            "eval_code_now": all(e["spec"].get("code") == eval_code(e["spec"]["kind"]) for e in data["evaluations"].values())}


def format_result(r: dict) -> str:
    m, sm = r["machine"], r["stored_machine"]
    lines = [f"{r['name']}: {r['verdict']} (largest difference {r['max_abs']:.3g})",
             f"  stored : {sm.get('cpu', '?')} [{sm.get('cpu_kind', '?')}{', ' + sm['gpu'] if sm.get('gpu') else ''}],"
             f" {r['stored_precision']}",
             f"  now    : {m.get('cpu', '?')} [{m.get('cpu_kind', '?')}{', ' + m['gpu'] if m.get('gpu') else ''}],"
             f" {r['precision']}" + ("" if r["same_machine"] else "  (another machine kind: tolerance applies)")]
    if not r["code_now"]:
        lines.append("  note: the stored run was trained by other training code; the retrained run is today's code")
    width = max(len(row[0]) for row in r["table"])
    lines.append(f"  {'':{width}s}  {'stored':>12s}  {'retrained':>12s}  {'difference':>11s}")
    for label, a, b in r["table"]:
        lines.append(f"  {label:{width}s}  {a:12.6f}  {b:12.6f}  {b - a:+11.2e}")
    lines.append(f"  validation log: {r['validation']['n']} values, largest difference {r['validation']['max_abs']:.3g}"
                 f"; evaluations: {sum(c['n'] for c in r['evaluations'].values())} values")
    missing = sorted({m for c in (r["validation"], *r["evaluations"].values()) for m in c["missing"]})
    if missing:
        lines.append(f"  values on one side only: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    from .store import RunStore, StoreError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="stored run names (the newest record of each name)")
    ap.add_argument("--sample", type=int, metavar="K", help="verify K stored runs drawn at random")
    ap.add_argument("--seed", type=int, default=0, help="with --sample: the draw's seed")
    ap.add_argument("--list", action="store_true", help="list the stored runs and exit")
    ap.add_argument("--profile", default="cpu", help="whose store (default cpu: results/runs/)")
    ap.add_argument("--store", type=Path, help="a store folder instead of the profile's")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE,
                    help=f"largest accepted difference where the machine differs (default {TOLERANCE})")
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
        r = verify(rec, args.tolerance, P.device, P.precision, progress=not args.no_progress)
        print(format_result(r), flush=True)
        bad += r["verdict"] == "differs"
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
