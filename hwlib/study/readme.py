"""Regenerate the README's results table from report/generated/*.json (between the markers)."""

from __future__ import annotations

import json
import math

from hwlib.config import CLASS_NAMES, REPO_ROOT, SEED_RESULTS
from hwlib.io import atomic_write_text

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _f(v, d=3):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def results_table(gen_dir=None) -> str:
    gen = gen_dir or REPO_ROOT / "report" / "generated"

    def load(name):
        p = gen / f"{name}.json"
        return json.loads(p.read_text()) if p.exists() else None

    det, sc, kp, pipe = load("02_detector_training"), load("03_scale_specialization"), load("04_keypoint_training"), load("pipeline")
    seed = SEED_RESULTS
    rows = ["| figure (AP per class: circle / square / triangle) | original study | this study (`cpu` profile) |", "|---|---|---|"]
    def pm(r, key, *sub):
        m, sd = r["mean"][key], r["std"][key]
        for k in sub:
            m, sd = m[k], sd[k]
        return f"{_f(m)} ± {_f(sd)}"

    def seeds(r):
        return f"{len(r['seeds'])} seed{'s' if len(r['seeds']) != 1 else ''}"

    if det:
        split = f"{det.get('eval_split', 'val')} split, {det.get('n_test', '?')} images"
        se, rf = det["models"]["seed_exact"], det["models"]["rf_aware"]
        ap = lambda r, p: " / ".join(_f(r["mean"][f"ap_{p}"][n]) for n in CLASS_NAMES)  # noqa: E731
        rows.append(f"| detector mAP@0.5, seed protocol (conf ≥ 0.5), seed-exact network ({seeds(se)}, {split}) | "
                    f"{seed['detector']['map']:.3f} (AP {' / '.join(f'{v:.3f}' for v in seed['detector']['ap'].values())}) | "
                    f"{pm(se, 'map_seed')} (AP {ap(se, 'seed')}) |")
        rows.append(f"| detector mAP@0.5, standard protocol (conf ≥ 0.001), seed-exact network ({seeds(se)}) | — | "
                    f"{pm(se, 'map_standard')} (AP {ap(se, 'standard')}) |")
        rows.append(f"| detector mAP@0.5, standard protocol, receptive-field-aware heads ({seeds(rf)}) | — | "
                    f"{pm(rf, 'map_standard')} (AP {ap(rf, 'standard')}) |")
        rows.append(f"| detector training seconds per seed (seed-exact / rf-aware) | — | "
                    f"{sum(se['train_seconds']) / len(se['train_seconds']):.0f} / {sum(rf['train_seconds']) / len(rf['train_seconds']):.0f} |")
    if kp:
        m = kp["methods"]
        hm = m["heatmap"]
        am = hm["mean"]["decodings"]["heatmap_argmax"]
        rows.append(f"| heatmap PCK@0.05 / @0.20 (DARK decoding; {seeds(hm)}, {kp.get('eval_split', 'val')} split) | "
                    f"{seed['keypoints']['heatmap']['0.05']:.2f} / {seed['keypoints']['heatmap']['0.2']:.2f} (argmax) | "
                    f"{pm(hm, 'pck_0.05')} / {pm(hm, 'pck_0.2')} |")
        rows.append(f"| heatmap PCK@0.05 / @0.20 (argmax) | — | {_f(am['pck_0.05'])} / {_f(am['pck_0.2'])} |")
        rows.append(f"| regression PCK@0.05 / @0.20 (plateau reached: {m['regression']['plateau']['reached']}) | "
                    f"{seed['keypoints']['regression']['0.05']:.2f} / {seed['keypoints']['regression']['0.2']:.2f} | "
                    f"{pm(m['regression'], 'pck_0.05')} / {pm(m['regression'], 'pck_0.2')} |")
        rows.append(f"| integral regression PCK@0.05 / @0.20 | — | {pm(m['integral'], 'pck_0.05')} / {pm(m['integral'], 'pck_0.2')} |")
    if sc:
        s_ = sc["ablation_setting"]
        rows.append(f"| the seed's proposals and the receptive-field controls | proposed, not run | {len(sc['arms'])} arms × "
                    f"{s_['seeds']} seeds (width {s_['width']}, {s_['steps']} steps), paired with the baseline |")
    if pipe:
        st = pipe["stages"]
        part = lambda *names: sum(st.get(n, 0.0) for n in names) / 60  # noqa: E731
        rows.append(f"| notebook time: 02+03 (detector) / 04–06 (keypoints) | — | "
                    f"{part('02_detector_training', '03_scale_specialization'):.1f} / "
                    f"{part('04_keypoint_training', '05_ablations', '06_failure_cases'):.1f} min |")
        rows.append(f"| whole report, notebook time of the last run | — | {pipe['total_seconds'] / 60:.1f} min "
                    f"({pipe['machine']['cpu']}, {pipe['machine']['threads']} threads) |")
        train = recorded_training_seconds(det, sc, kp, load("05_ablations"))
        rows.append(f"| training time in the records (every seed of every model and arm, as first trained) | — | "
                    f"{train / 60:.1f} min |")
        stale = [n for n, ok in (pipe.get("up_to_date") or {}).items() if not ok]
        if stale:
            rows.append("")
            rows.append(f"Not rerun with the current code: {', '.join(f'`{n}`' for n in stale)} — its rows come from "
                        "an earlier run (the next `make report` reruns it). Stage times come from the machines in "
                        "`pipeline.json` → `stage_machines`, which need not be one.")
    if pipe:
        rows.append("")
        rows.append("A run resumes: a training run whose finished checkpoint (same config, last step) is still under "
                    "`runs/` is loaded, not retrained, so the last run's notebook time can be far below a run from "
                    "scratch, which needs about the records' training time plus the notebook time of evaluation.")
    return "\n".join(rows)


def recorded_training_seconds(*results) -> float:
    """Sum of ``train_seconds`` over every record (models, methods, arms) of the given results; decoding-only arms
    re-use their models' training and are not counted."""
    total = 0.0
    for res in results:
        for group in ("models", "methods", "arms"):
            for r in ((res or {}).get(group) or {}).values():
                total += sum(v for v in r.get("train_seconds", []) if v == v)
    return total


def update_readme() -> None:
    path = REPO_ROOT / "README.md"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(path, f"{head}{BEGIN}\n{results_table()}\n{END}{tail}")
    print("README.md results table updated")
