"""Regenerate the README's results table from report/generated/*.json (between the markers)."""

from __future__ import annotations

import json
import math

from .config import CLASS_NAMES, REPO_ROOT, SEED_RESULTS
from .report import atomic_write_text

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
    rows = ["| figure (AP per class: circle / square / triangle) | seed report | this study (`cpu` profile) |", "|---|---|---|"]
    if det:
        ap = lambda d, p: " / ".join(_f(d[f"ap_{p}"][n]) for n in CLASS_NAMES)  # noqa: E731
        rows.append(f"| detector mAP@0.5, seed protocol (conf ≥ 0.5), seed-exact network | {seed['detector']['map']:.3f} "
                    f"(AP {' / '.join(f'{v:.3f}' for v in seed['detector']['ap'].values())}) | {_f(det['map_seed'])} (AP {ap(det, 'seed')}) |")
        rows.append(f"| detector mAP@0.5, standard protocol (conf ≥ 0.001), seed-exact network | — | "
                    f"{_f(det['map_standard'])} (AP {ap(det, 'standard')}) |")
        rf = det["rf_aware"]
        rf_arm = (sc or {}).get("arms", {}).get("rf_aware")
        if rf_arm and rf_arm.get("setting") == "headline":
            rows.append(f"| detector mAP@0.5, standard protocol, receptive-field-aware heads (mean ± std, {rf_arm['seeds']} seeds) | — | "
                        f"{_f(rf_arm['map_standard'])} ± {_f(rf_arm['map_standard_std'])} (AP {ap(rf_arm, 'standard')}) |")
        else:
            rows.append(f"| detector mAP@0.5, standard protocol, receptive-field-aware heads | — | "
                        f"{_f(rf['map_standard'])} (AP {ap(rf, 'standard')}) |")
        rows.append(f"| detector training seconds (seed-exact / rf-aware) | — | {det['train_seconds']:.0f} / {rf['train_seconds']:.0f} |")
    if kp:
        p = kp["pck"]
        rows.append(f"| heatmap PCK@0.05 / @0.20 (DARK decoding) | {seed['keypoints']['heatmap']['0.05']:.2f} / "
                    f"{seed['keypoints']['heatmap']['0.2']:.2f} (argmax) | {_f(p['heatmap_dark']['0.05'])} / {_f(p['heatmap_dark']['0.2'])} |")
        rows.append(f"| heatmap PCK@0.05 / @0.20 (argmax) | — | {_f(p['heatmap_argmax']['0.05'])} / {_f(p['heatmap_argmax']['0.2'])} |")
        rows.append(f"| regression PCK@0.05 / @0.20 | {seed['keypoints']['regression']['0.05']:.2f} / "
                    f"{seed['keypoints']['regression']['0.2']:.2f} | {_f(p['regression']['0.05'])} / {_f(p['regression']['0.2'])} |")
        rows.append(f"| integral regression PCK@0.05 / @0.20 | — | {_f(p['integral']['0.05'])} / {_f(p['integral']['0.2'])} |")
    if sc:
        cheap = [a for a in sc["arms"].values() if a.get("setting", "cheap") == "cheap"]
        rows.append(f"| the seed's proposals and the receptive-field controls | proposed, not run | {len(cheap)} arms × "
                    f"{sc['ablation_setting']['seeds']} seeds (width {sc['ablation_setting']['width']}, "
                    f"{sc['ablation_setting']['steps']} steps) |")
    if pipe:
        st = pipe["stages"]
        part = lambda *names: sum(st.get(n, 0.0) for n in names) / 60  # noqa: E731
        rows.append(f"| notebook time: 02+03 (detector) / 04–06 (keypoints) | — | "
                    f"{part('02_detector_training', '03_scale_specialization'):.1f} / "
                    f"{part('04_keypoint_training', '05_ablations', '06_failure_cases'):.1f} min |")
        rows.append(f"| whole report, notebook time | — | {pipe['total_seconds'] / 60:.1f} min ({pipe['machine']['cpu']}, "
                    f"{pipe['machine']['threads']} threads) |")
        stale = [n for n, ok in (pipe.get("up_to_date") or {}).items() if not ok]
        if stale:
            rows.append("")
            rows.append(f"Not rerun with the current code: {', '.join(f'`{n}`' for n in stale)} — its rows come from "
                        "an earlier run (the next `make report` reruns it). Stage times come from the machines in "
                        "`pipeline.json` → `stage_machines`, which need not be one.")
    return "\n".join(rows)


def update_readme() -> None:
    path = REPO_ROOT / "README.md"
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(path, f"{head}{BEGIN}\n{results_table()}\n{END}{tail}")
    print("README.md results table updated")


if __name__ == "__main__":
    update_readme()
