"""Training sets that a notebook asks for, callable without the notebook: fill the run store stage by stage.

Each function here is the one call by which a notebook trains (or reads from the run store) a set of runs *that
depends on no other notebook*, with every evaluation and stored analysis the notebook then reads. The notebook calls
it, and so does this command, so both ask for exactly the same runs: a session, a lent GPU or a cluster job can fill
the store for one set without running the rest of its notebook (whose other cells need other notebooks' runs)::

    python -m hwlib.stages list                                  # the sets, their runs, how many are stored
    python -m hwlib.stages train part1-arms [--arms NAME ...]    # train what is missing, one run at a time
    python -m hwlib.stages train part2-ablations --shard 0/2     # half of the missing runs (another process: 1/2)
    python -m hwlib.stages train part1-headline                  # notebook 02's runs and 03's evaluations of them

Every finished run is written to the store at once (``results/runs/`` at ``cpu``): commit it as it lands.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from hwlib.config import load_profile
from hwlib.vision.keypoints import METHODS

# ----------------------------------------------------------------------------- Part 1: the headline detectors
def headline_arm_overrides(P) -> dict:
    """Notebook 02's detectors: ``name -> DetectorConfig overrides`` of ``P.detector``."""
    return {"seed_exact": {}, "rf_aware": {"head": P.rf_aware_head}, "first_round_data": {"balanced_classes": False}}


def headline_detectors(P, progress: bool = True):
    """Notebook 02's runs: the seed-exact and receptive-field-aware detectors (``P.seed_exact_seeds`` /
    ``P.rf_aware_seeds`` seeds; with ``P.ceiling`` each also trained for twice its schedule) and the seed-exact recipe
    on the unbalanced first-generation data, tested on ``P.n_test`` images, with the original study's decoding
    proposals re-decoded from the same forward passes. Returns :class:`~hwlib.study.arms.Runs`."""
    from hwlib.config import DECODING_PROPOSALS
    from hwlib.study.arms import run_detectors

    decode_arms = {f"{m}, {k}": (m, o) for m in ("seed_exact", "rf_aware") for k, o in DECODING_PROPOSALS.items()}
    return run_detectors(P.detector, headline_arm_overrides(P), run_dir=P.run_dir, prefix="02_", split="test",
                         seeds={"seed_exact": P.seed_exact_seeds, "rf_aware": P.rf_aware_seeds,
                                "first_round_data": P.seed_exact_seeds},
                         n_eval=P.n_test, validate=True, validate_seeds=P.validated_seeds, baseline=None,
                         decode_arms=decode_arms, store=P.store,
                         ceiling={"seed_exact", "rf_aware"} if P.ceiling else (), progress=progress, **P.runtime)


def any_size_probe(P, progress: bool = True):
    """Notebook 03's probe: seed 0 of the seed-exact headline detector (class-tied training) on ``P.n_any_size``
    test images where every class appears at every size, with the class confusion and AP by class x size."""
    from hwlib.study.arms import run_detectors

    return run_detectors(P.detector, {"seed_exact": {}}, {"seed_exact": [0]}, run_dir=P.run_dir, prefix="02_",
                         split="test", n_eval=P.n_any_size, validate=True, validate_seeds=P.validated_seeds,
                         baseline=None, eval_size_mode="any", analyses=True, store=P.store, progress=progress,
                         **P.runtime)


def class_tied_on_any_size(P, progress: bool = True):
    """Every seed of the seed-exact headline detector (class-tied training) on ``P.n_test`` any-size test images:
    notebook 03's pairing partner for the detectors trained on any-size data."""
    from hwlib.study.arms import run_detectors

    return run_detectors(P.detector, {"seed_exact": {}}, {"seed_exact": P.seed_exact_seeds}, run_dir=P.run_dir,
                         prefix="02_", split="test", n_eval=P.n_test, validate=True, validate_seeds=P.validated_seeds,
                         baseline=None, eval_size_mode="any", setting="class-tied training data (headline models)",
                         store=P.store, progress=progress, **P.runtime)


def any_size_detectors(P, progress: bool = True):
    """Notebook 03's detectors trained on any-size data (the headline recipe, ``P.seed_exact_seeds`` seeds), tested on
    ``P.n_test`` any-size test images."""
    from hwlib.study.arms import run_detectors

    any_cfg = dataclasses.replace(P.detector, size_mode="any")
    return run_detectors(any_cfg, {"any_size": {}}, {"any_size": P.seed_exact_seeds}, run_dir=P.run_dir, prefix="03_",
                         split="test", n_eval=P.n_test, validate=True, validate_seeds=P.validated_seeds, baseline=None,
                         store=P.store, progress=progress, **P.runtime)


def part1_headline(P, names=None, progress: bool = True):
    """Everything the notebooks ask of the headline detectors' runs: notebook 02's runs (:func:`headline_detectors`)
    and the evaluations notebook 03 makes of them (:func:`any_size_probe`, :func:`class_tied_on_any_size`), made
    while their weights are here, so that a run trained on another machine serves both notebooks from the store."""
    if names:
        raise ValueError("the headline set is trained whole (no --arms)")
    return headline_detectors(P, progress), any_size_probe(P, progress), class_tied_on_any_size(P, progress)


# ----------------------------------------------------------------------------- Part 1: the proposals and controls
BEST_ANCHOR = "single best anchor (YOLOv3)"
BEST_ANCHOR_DEEP = "single best anchor, deep 3x3 heads"    # does the failure go where the heads see their objects?
BEST_ANCHOR_IGNORE = "single best anchor, ignore IoU 0.5"  # ... or where near-misses are not trained as negatives?
BEST_ANCHOR_NEIGHBOURS = "best anchor, two neighbour cells"  # ... or where the object's centre is not one cell alone?
RATIO_CENTRE_CELL = "ratio matching, centre cell only"  # the other way round: every fitting anchor, one cell


def part1_arm_overrides(A) -> dict:
    """Notebook 03's arms: ``name -> DetectorConfig overrides`` of the ablation setting ``A`` (the original study's
    anchor proposals, focal loss, the depth / receptive-field / capacity controls, YOLOv3's assignment)."""
    return {
        "baseline": {},
        "S2 [48,56,72]": {"anchors": (A.anchors[0], (48, 56, 72), A.anchors[2])},
        "S2 [56,64,80]": {"anchors": (A.anchors[0], (56, 64, 80), A.anchors[2])},
        "S3 [112,144,192]": {"anchors": (A.anchors[0], A.anchors[1], (112, 144, 192))},
        "S3 [112,144,208]": {"anchors": (A.anchors[0], A.anchors[1], (112, 144, 208))},
        "focal, alpha square x2": {"focal_gamma": 1.5, "class_alpha": (1.0, 2.0, 1.0)},
        "deep heads 1x1": {"head": "deep1x1"}, "deep heads 1x1, wide": {"head": "deep1x1_wide"},
        "deep heads 3x3": {"head": "deep"}, "dilated heads": {"head": "dilated"},
        BEST_ANCHOR: {"assignment": "best_anchor", "neighbour_cells": False},
        BEST_ANCHOR_DEEP: {"assignment": "best_anchor", "neighbour_cells": False, "head": "deep"},
        BEST_ANCHOR_IGNORE: {"assignment": "best_anchor", "neighbour_cells": False, "ignore_iou": 0.5},
        BEST_ANCHOR_NEIGHBOURS: {"assignment": "best_anchor", "neighbour_cells": True},
        RATIO_CENTRE_CELL: {"neighbour_cells": False},
    }


def part1_arms(P, names=None, progress: bool = True):
    """Notebook 03's arms at the profile's ablation setting (``P.det_ablation``), ``P.det_seeds`` seeds each, every
    seed validated at its quarters (each arm's own plateau verdict), tested on ``P.n_test`` test images and paired
    with the baseline; and the diagnosis of the single-best-anchor arm against the baseline at their positive anchors
    (seed 0, validation images; :func:`hwlib.study.detection.evaluate_positives`), stored with those runs.

    ``names``: only these arms (the diagnosis where both its arms are among them). Returns ``(arms, runs,
    diagnosis)``: the overrides trained, their :class:`~hwlib.study.arms.Runs` and ``{arm: positive_anchor_scores}``.
    """
    from hwlib.study.detection import evaluate_positives
    from hwlib.study.codes import positives_spec
    from hwlib.study.arms import run_detectors

    A = P.det_ablation
    arms = _chosen(part1_arm_overrides(A), names)
    runs = run_detectors(A, arms, P.det_seeds, run_dir=P.run_dir / "03_arms", split="test", n_eval=P.n_test,
                         validate=True, validate_seeds=0, store=P.store,
                         setting=f"width {A.width:g}, {A.steps} steps", progress=progress, **P.runtime)
    pair = ("baseline", BEST_ANCHOR)
    diagnosis = ({n: runs.analysis(n, 0, positives_spec(dataclasses.replace(A, **arms[n])), evaluate_positives)
                  for n in pair if _own(runs, n, 0)} if set(pair) <= set(arms) else {})
    return arms, runs, diagnosis


def best_anchor_tests(runs) -> dict:
    """The tests of why single-best-anchor assignment fails, each arm paired seed by seed with the plain
    best-anchor arm (not with the baseline): heads that see their objects (:data:`BEST_ANCHOR_DEEP`), YOLOv3's
    ignore threshold (:data:`BEST_ANCHOR_IGNORE`), and the best anchor in the object's cell and its two nearest
    neighbours, YOLOv5's three cells (:data:`BEST_ANCHOR_NEIGHBOURS`); and ratio matching in the centre cell only
    (:data:`RATIO_CENTRE_CELL`: every anchor that fits, on every head, but one cell), paired with the best-anchor
    arm too. ``{arm: Record}`` for those ``runs`` holds."""
    if BEST_ANCHOR not in runs.records:
        return {}
    paired = ["map_standard", "map_seed", "ap_standard", "ap_seed"]          # per class too: which class it explains
    return {n: runs.records[n].with_baseline(runs.records[BEST_ANCHOR], paired)
            for n in (BEST_ANCHOR_DEEP, BEST_ANCHOR_IGNORE, BEST_ANCHOR_NEIGHBOURS, RATIO_CENTRE_CELL)
            if n in runs.records}


def _own(runs, name: str, seed: int) -> bool:
    """Whether this process makes the analyses of run ``(name, seed)``: always, unless the missing runs are split
    over shards (``--shard``), where the shard that trains a run makes them (it has the weights)."""
    from hwlib.study.obtain import SHARD_ENV, parse_shard, shard_of

    shard, rec = os.environ.get(SHARD_ENV), runs.stored.get((name, seed))
    if not shard or rec is None:
        return True
    i, n = parse_shard(shard)
    return shard_of(rec.key, n) == i


# ----------------------------------------------------------------------------- Part 2: the keypoint methods
def keypoint_methods(P, progress: bool = True):
    """Notebooks 04's and 06's runs: heatmap, integral and GAP+FC regression (``P.kp_seeds`` seeds; with
    ``P.ceiling`` each also trained for twice its schedule), tested on ``P.n_test`` figures with every decoding's
    predictions. Returns :class:`~hwlib.study.arms.Runs`."""
    from hwlib.study.arms import run_keypoint_methods

    return run_keypoint_methods(P.keypoint, METHODS, P.kp_seeds, run_dir=P.run_dir, prefix="04_", split="test",
                                n_eval=P.n_test, validate_seeds=P.validated_seeds, store=P.store, ceiling=P.ceiling,
                                progress=progress, **P.runtime)


# ----------------------------------------------------------------------------- Part 2: ablations of the heatmap model
ABLATION_BASE = "base (64, sigma 2, skip, CE)"
ABLATION_LONGER = "base, twice the steps"     # the base arm's distance to its plateau, on the test split


def part2_arm_overrides(A) -> dict:
    """Notebook 05's arms: ``name -> KeypointConfig overrides`` of the ablation setting ``A``."""
    return {
        ABLATION_BASE: {},
        "res 32": {"heatmap_size": 32}, "res 128": {"heatmap_size": 128},
        "sigma 1": {"sigma": 1.0}, "sigma 3": {"sigma": 3.0}, "sigma 4": {"sigma": 4.0},
        "no skip": {"skip": False},
        "MSE loss (seed's)": {"heatmap_loss": "mse"},
        "res 32, sigma 1 (same image px)": {"heatmap_size": 32, "sigma": 1.0},
        "res 128, sigma 4 (same image px)": {"heatmap_size": 128, "sigma": 4.0},
        "MSE, res 32": {"heatmap_loss": "mse", "heatmap_size": 32},
        "MSE, res 128": {"heatmap_loss": "mse", "heatmap_size": 128},
        "MSE, sigma 1": {"heatmap_loss": "mse", "sigma": 1.0}, "MSE, sigma 3": {"heatmap_loss": "mse", "sigma": 3.0},
        "MSE, sigma 4": {"heatmap_loss": "mse", "sigma": 4.0},
        ABLATION_LONGER: {"steps": 2 * A.steps},
    }


def part2_ablations(P, names=None, progress: bool = True):
    """Notebook 05's arms at the profile's ablation setting (``P.kp_ablation``), ``P.kp_seeds`` seeds each, every
    seed validated at its quarters, the base arm's verdict a ceiling (its doubled runs are the "twice the steps"
    arm's: one training key), tested on ``P.n_test`` test figures and paired with the base arm.
    Returns ``(arms, runs)``."""
    from hwlib.study.arms import run_keypoint_arms

    A = P.kp_ablation
    arms = _chosen(part2_arm_overrides(A), names)
    runs = run_keypoint_arms(A, arms, P.kp_seeds, run_dir=P.run_dir / "05_arms", split="test", n_eval=P.n_test,
                             baseline=ABLATION_BASE if ABLATION_BASE in arms else None, store=P.store, validate=True,
                             ceiling=[ABLATION_BASE] if ABLATION_BASE in arms else (),
                             setting=f"base channels {A.base_channels}, {A.steps} steps of batch {A.batch_size}",
                             progress=progress, **P.runtime)
    return arms, runs


def _chosen(arms: dict, names) -> dict:
    if not names:
        return arms
    unknown = [n for n in names if n not in arms]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; valid: {list(arms)}")
    return {n: o for n, o in arms.items() if n in names}


def _whole(fn):
    """A set trained whole: ``--arms`` is refused."""
    def train(P, names=None):
        if names:
            raise ValueError("this set is trained whole (no --arms)")
        return fn(P)
    return train


# ----------------------------------------------------------------------------- each set's runs, without training
def planned_runs(P, stage: str) -> list:
    """The trainings set ``stage`` asks for at profile ``P`` (:class:`hwlib.study.plan.PlannedRun`), by the rules its
    training function follows: the headline detectors with their ceiling runs (the any-size evaluations of notebook
    03 reuse them), the arms, the any-size detectors, the keypoint methods with their ceiling runs, the ablations."""
    import dataclasses as dc

    from hwlib.study.plan import detector_plan, keypoint_plan

    if stage == "part1-headline":
        return detector_plan(P.detector, headline_arm_overrides(P), {"seed_exact": P.seed_exact_seeds,
                             "rf_aware": P.rf_aware_seeds, "first_round_data": P.seed_exact_seeds}, "02_", True,
                             P.validated_seeds, {"seed_exact", "rf_aware"} if P.ceiling else ())
    if stage == "part1-arms":
        return detector_plan(P.det_ablation, part1_arm_overrides(P.det_ablation), P.det_seeds, "", True, 0)
    if stage == "part1-any-size":
        return detector_plan(dc.replace(P.detector, size_mode="any"), {"any_size": {}},
                             {"any_size": P.seed_exact_seeds}, "03_", True, P.validated_seeds)
    if stage == "part2-methods":
        return keypoint_plan(P.keypoint, {m: {} for m in METHODS}, P.kp_seeds, "04_", True, P.validated_seeds,
                             set(METHODS) if P.ceiling else ())
    if stage == "part2-ablations":
        return keypoint_plan(P.kp_ablation, part2_arm_overrides(P.kp_ablation), P.kp_seeds, "", True, 0,
                             [ABLATION_BASE], method="heatmap")
    raise ValueError(f"unknown set {stage!r}; valid: {list(STAGES)}")


def store_status(P, stages=None, probe_seconds: float = 3.0) -> dict:
    """Per set: runs stored, stale and missing in the profile's store, and the hours of training the stale and missing
    ones take on this CPU (their images over this CPU's measured images per second, :func:`hwlib.study.plan.speeds`).
    Returns ``{set: {"runs", "stored", "stale", "missing", "hours_left", "missing_runs": [name], "stale_runs":
    [{"name", "why"}]}, "total": {...}, "speeds": [...], "profile", "cpu"}``."""
    from hwlib.study.obtain import _as_store
    from hwlib.study.machine import cpu_model
    from hwlib.study.plan import speeds, status

    store = _as_store(P.store)
    plans = {s: planned_runs(P, s) for s in (stages or STAGES)}
    states = {s: status(runs, store) for s, runs in plans.items()}
    todo = [r for st_ in states.values() for r in (st_["missing"] + [x for x, _ in st_["stale"]])]
    rate = speeds(todo, store, probe_seconds, P.precision) if todo else {}
    out = {"profile": P.name, "cpu": cpu_model(), "sets": {}}
    for s, st_ in states.items():
        left = [*st_["missing"], *(x for x, _ in st_["stale"])]
        out["sets"][s] = {"runs": sum(map(len, (st_["stored"], st_["stale"], st_["missing"]))),
                          "stored": len(st_["stored"]), "stale": len(st_["stale"]), "missing": len(st_["missing"]),
                          "hours_left": sum(r.images / rate[r.model()][0] for r in left
                                            if rate[r.model()][0]) / 3600,
                          "unmeasured": sum(rate[r.model()][0] is None for r in left),
                          "missing_runs": [r.name for r in st_["missing"]],
                          "stale_runs": [{"name": r.name, "why": why} for r, why in st_["stale"]]}
    out["total"] = {k: sum(v[k] for v in out["sets"].values()) for k in ("runs", "stored", "stale", "missing",
                                                                         "hours_left", "unmeasured")}
    out["speeds"] = [{"model": list(m), "img_s": v, "from": how} for m, (v, how) in rate.items()]
    return out


_HOW = {"stored": "median of the stored runs trained on this CPU alone",
        "stored, fastest": "fastest stored run on this CPU; older runs do not record their load",
        "probe": "probe of its training steps here, validation not included",
        "unmeasured": "no stored run of it on this CPU, and another training holds the machine: not probed"}


README_BEGIN, README_END = "<!-- store:begin -->", "<!-- store:end -->"


def status_markdown(st_: dict) -> str:
    """The status as the README shows it: a table per set, and where its hours come from."""
    rows = ["| training set | runs | stored | stale | missing | hours left on this CPU |", "|---|---|---|---|---|---|"]
    for s, v in [*st_["sets"].items(), ("total", st_["total"])]:
        extra = f" + {v['unmeasured']} run(s) unmeasured" if v["unmeasured"] else ""
        name = f"**{s}**" if s == "total" else f"`{s}`"
        rows.append(f"| {name} | {v['runs']} | {v['stored']} | {v['stale']} | {v['missing']} | "
                    f"{v['hours_left']:.1f}{extra} |")
    return "\n".join(rows) + (f"\n\nGenerated by `python -m hwlib.stages status --readme` on {st_['cpu']} "
                              f"(`{st_['profile']}` profile); \"unmeasured\": no run of that model stored from this "
                              "CPU, and another training held the machine, so no probe.")


def write_readme_status(st_: dict, readme=None) -> None:
    """Replace the README's block between :data:`README_BEGIN` and :data:`README_END` with :func:`status_markdown`."""
    from hwlib.config import REPO_ROOT
    from hwlib.io import atomic_write_text

    path = readme or REPO_ROOT / "README.md"
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{path} has no {README_BEGIN} ... {README_END} block")
    head, rest = text.split(README_BEGIN, 1)
    atomic_write_text(path, head + README_BEGIN + "\n" + status_markdown(st_) + "\n" + README_END
                      + rest.split(README_END, 1)[1])


def format_status(st_: dict) -> str:
    lines = [f"run store at the {st_['profile']} profile, training hours on this CPU ({st_['cpu']}):",
             f"  {'set':18s} {'runs':>5s} {'stored':>7s} {'stale':>6s} {'missing':>8s} {'hours left':>11s}"]
    for s, v in [*st_["sets"].items(), ("total", st_["total"])]:
        lines.append(f"  {s:18s} {v['runs']:5d} {v['stored']:7d} {v['stale']:6d} {v['missing']:8d} "
                     f"{v['hours_left']:11.1f}" + (f"  + {v['unmeasured']} run(s) of an unmeasured speed"
                                                   if v["unmeasured"] else ""))
    for s, v in st_["sets"].items():
        for x in v["stale_runs"]:
            lines.append(f"  stale in {s}: {x['name']}: {x['why']}")
    for sp in st_["speeds"]:
        speed = f"{sp['img_s']:.1f} images/s" if sp["img_s"] else "unmeasured"
        lines.append(f"  speed of {'/'.join(map(str, sp['model']))}: {speed} ({_HOW[sp['from']]})")
    return "\n".join(lines)


# name: (what it trains, its arms or models by name, train(P, names) -> Runs of its main records, seeds per arm)
STAGES = {
    "part1-headline": ("notebook 02's headline detectors, with the evaluations notebook 03 makes of them",
                       lambda P: list(headline_arm_overrides(P)),
                       _whole(lambda P: part1_headline(P)[0]), lambda P: P.seed_exact_seeds),
    "part1-arms": ("notebook 03's arms (Part 1: the original study's proposals and the controls)",
                   lambda P: list(part1_arm_overrides(P.det_ablation)), lambda P, names=None: part1_arms(P, names)[1],
                   lambda P: P.det_seeds),
    "part1-any-size": ("notebook 03's detectors trained on any-size data", lambda P: ["any_size"],
                       _whole(any_size_detectors), lambda P: P.seed_exact_seeds),
    "part2-methods": ("notebook 04's keypoint methods (notebook 06 reads their predictions)",
                      lambda P: list(METHODS),
                      _whole(keypoint_methods), lambda P: P.kp_seeds),
    "part2-ablations": ("notebook 05's arms (Part 2: ablations of the heatmap model)",
                        lambda P: list(part2_arm_overrides(P.kp_ablation)),
                        lambda P, names=None: part2_ablations(P, names)[1], lambda P: P.kp_seeds),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hwlib.stages", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the training sets and their arms")
    stt = sub.add_parser("status", help="per set: runs stored, stale, missing, and the hours left on this CPU")
    stt.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write the status as JSON (- : stdout)")
    stt.add_argument("--readme", action="store_true", help="also write it into README.md's run-store section")
    stt.add_argument("stages", nargs="*", choices=[[], *STAGES], help="only these sets (default: all)")
    tr = sub.add_parser("train", help="train (or read from the store) one set's runs")
    tr.add_argument("stage", choices=list(STAGES))
    tr.add_argument("--arms", nargs="+", metavar="NAME", help="only these arms (default: all)")
    tr.add_argument("--shard", metavar="I/N", help="train only shard I of N of the missing runs (N processes sharing "
                    "the store: each waits for the others' runs)")
    for p in (ls, tr, stt):
        p.add_argument("--profile", default="cpu")
    args = ap.parse_args(argv)
    P = load_profile(args.profile)
    if args.command == "status":
        import json

        from hwlib.io import atomic_write_text, to_jsonable

        st_ = store_status(P, args.stages or None)
        if args.json == "-":
            print(json.dumps(to_jsonable(st_), indent=1))
        else:
            print(format_status(st_))
            if args.readme:
                write_readme_status(st_)
            if args.json:
                atomic_write_text(args.json, json.dumps(to_jsonable(st_), indent=1) + "\n")
        return 0
    if args.command == "list":
        for name, (what, arms_of, _, seeds) in STAGES.items():
            arms = arms_of(P)
            print(f"{name}: {what}; {len(arms)} arms x {seeds(P)} seeds at the {P.name} profile")
            for a in arms:
                print(f"  {a}")
        return 0
    if args.shard:
        from hwlib.study.obtain import SHARD_ENV, parse_shard

        parse_shard(args.shard)
        os.environ[SHARD_ENV] = args.shard
    try:
        runs = STAGES[args.stage][2](P, args.arms)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, r in runs.to_json().items():
        print(f"{name:34s} test {', '.join(f'{k} {v:.4f}' for k, v in r['mean'].items() if k in ('map_standard', 'pck_0.05'))}"
              f"  ({len(r['seeds'])} seeds; stored: {', '.join(r.get('runs', [])) or 'no store'})")
    return 0
