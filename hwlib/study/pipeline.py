"""Run the numbered notebooks in order with papermill, then build the PDF.

    python -m hwlib.pipeline --profile cpu            # what `make report` runs
    python -m hwlib.pipeline --profile smoke --pdf    # CI: notebooks at smoke scale + the PDF
    python -m hwlib.pipeline --profile cpu --force    # rerun every stage

Each stage executes ``notebooks/NN_*.ipynb`` with ``-p profile NAME`` on the ``python3`` kernel, cwd the
repository root, and writes the executed copy to ``runs/<profile>/notebooks/``. A stage is skipped when
its notebook, the hwlib sources, the parameters and every earlier stage are unchanged since its last
successful run (the state lives in ``runs/<profile>/pipeline_state.json``), so an interrupted run resumes
at the stage it stopped in; inside that stage, models whose training had finished (a complete checkpoint of the
same config, with its validation history where the notebook validates) are loaded instead of retrained, unless
``--force``. A failing notebook stops the pipeline with its name, the failing cell and
the error. Stage times go to ``pipeline.json`` in the profile's generated folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hwlib.config import NOTEBOOKS_DIR, PROFILES, REPO_ROOT, REPORT_DIR, load_profile
from hwlib.io import atomic_write_text
from hwlib.study.machine import machine_info
from hwlib.study.report import refresh_macros

HWLIB_DIR = Path(__file__).resolve().parent
# modules no notebook imports: changing them does not change any stage's results
NOT_IN_NOTEBOOKS = {"pipeline.py", "bench.py", "readme.py", "recipe.py", "run.py", "verify.py"}


def notebooks() -> list[Path]:
    found = sorted(NOTEBOOKS_DIR.glob("0[1-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no numbered notebooks in {NOTEBOOKS_DIR}")
    return found


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def notebook_source(nb: Path) -> str:
    """The cells' sources only: stored outputs (what nbval checks) do not change what a stage computes."""
    cells = json.loads(nb.read_text())["cells"]
    return "\n".join(f"{c['cell_type']}:" + "".join(c["source"]) for c in cells)


def stage_keys(profile: str, parameters: dict) -> dict[str, str]:
    """A key per stage: its notebook's sources + hwlib sources + the run store's files (a run added from another
    machine makes the stages stale) + parameters + the previous stage's key."""
    store = load_profile(profile, **parameters.get("overrides", {})).store
    code = _digest(sorted(p for p in HWLIB_DIR.glob("*.py") if p.name not in NOT_IN_NOTEBOOKS)
                   + sorted(store.glob("*.json")))
    keys, prev = {}, ""
    for nb in notebooks():
        prev = hashlib.sha256(f"{notebook_source(nb)}|{code}|{profile}|{json.dumps(parameters, sort_keys=True)}|{prev}"
                              .encode()).hexdigest()[:16]
        keys[nb.stem] = prev
    return keys


def check_parameters(nb: Path, parameters: dict) -> None:
    """Unknown notebook parameters are an error naming the valid ones (papermill would only warn)."""
    import papermill

    valid = set(papermill.inspect_notebook(str(nb)))
    unknown = set(parameters) - valid
    if unknown:
        raise ValueError(f"{nb.name}: unknown parameter(s) {sorted(unknown)}; valid parameters: {sorted(valid)}")


# which training workload dominates each stage's time (None: data generation and plotting, not scaled)
STAGE_WORKLOAD = {"01": None, "02": "detector", "03": "detector", "04": "keypoint", "05": "keypoint", "06": "keypoint"}


def probe_speed(profile: str, seconds: float = 5.0, overrides: dict | None = None) -> dict:
    """This CPU's training speed at the profile's settings: images/s of a few detector and heatmap-model training
    steps (the profile's width, batch size and precision; :func:`hwlib.study.plan.probe`), each timed for about
    ``seconds`` after its warm-up. About 10-20 s on any of our CPUs. Returns ``{"detector_img_s", "keypoint_img_s",
    "precision", "seconds"}``."""
    from hwlib.study.plan import PlannedRun, probe
    from hwlib.vision.train import pick_device, resolve_precision

    P = load_profile(profile, **(overrides or {}))
    t_start = time.perf_counter()
    det = probe(PlannedRun("detector", "detector", "speed probe", P.detector, 0), seconds, P.precision)
    kpt = probe(PlannedRun("keypoint", "heatmap", "speed probe", P.keypoint, 0), seconds, P.precision)
    return {"detector_img_s": det, "keypoint_img_s": kpt, "precision": resolve_precision(P.precision,
                                                                                        pick_device(P.device)),
            "seconds": time.perf_counter() - t_start}


def stage_machine(profile: str, probe: dict | None, overrides: dict | None = None) -> dict:
    """What ran a stage: CPU model and kind, bf16 native or not, threads, the precision used, the speed probe."""
    from hwlib.vision.train import cpu_kind, pick_device, resolve_precision

    info = machine_info()
    P = load_profile(profile, **(overrides or {}))
    return {"cpu": info["cpu"], "cpu_kind": cpu_kind(), "bf16_native": info["bf16_native"], "threads": info["threads"],
            "precision": resolve_precision(P.precision, pick_device(P.device)), "cuda": info["cuda"],
            "torch": info["torch"], "probe": probe}


def legacy_probe(generated_dir: Path) -> dict | None:
    """The reference machine's training speed for stages recorded before the pipeline probed it: from the full
    ``benchmark.json`` of that machine (detector and heatmap-model training at the loop's default setting under
    ``make``'s glibc tunables: the probe's model, batch size and precision). ``None`` without a full benchmark."""
    path = Path(generated_dir) / "benchmark.json"
    if not path.exists():
        return None
    b = json.loads(path.read_text())
    bf16 = (b.get("machine") or {}).get("bf16_native")
    setting = "bf16+channels_last+glibc" if bf16 else "fp32+glibc"
    try:
        if b.get("quick"):
            return None
        return {"detector_img_s": b["detector_train"]["settings"][setting],
                "keypoint_img_s": b["heatmap_train"]["settings"][setting], "precision": "bf16" if bf16 else "fp32",
                "source": f"benchmark.json ({setting})"}
    except (KeyError, TypeError):
        return None


def estimate_stages(reference: dict, probe: dict | None, names: list[str]) -> tuple[dict, str]:
    """Expected seconds of each stage on this machine, from a reference run's ``pipeline.json`` record.

    A training stage scales with the ratio of the reference machine's probe speed to this one's (detector
    stages by the detector probe, keypoint stages by the heatmap probe); stage 01 (data generation, no
    training) is taken as it is. Without a probe on either side the reference seconds are taken as they
    are. Where the reference run loaded its models instead of training them (its records' training seconds,
    ``reference["_training"]``, exceed its notebook seconds), the estimate adds that training: it assumes the
    models train (a fresh clone, a changed config); with finished runs under ``runs/`` the stage takes less.
    Returns ``({stage: seconds or None}, a sentence saying what the estimate rests on)``."""
    ref_stages = reference.get("stages", {})
    ref_machines = reference.get("stage_machines") or {}
    fallback = reference.get("_legacy_probe")              # see legacy_probe: for records without a probe
    out, scaled = {}, False
    for name in names:
        if name not in ref_stages:
            out[name] = None
            continue
        seconds = float(ref_stages[name])
        trained = float((reference.get("_training") or {}).get(name) or 0.0)
        if trained > seconds:                              # the reference run loaded its models
            seconds += trained
        workload = STAGE_WORKLOAD.get(name[:2])
        ref_probe = (ref_machines.get(name) or {}).get("probe") or fallback
        if workload and probe and ref_probe:
            seconds *= ref_probe[f"{workload}_img_s"] / probe[f"{workload}_img_s"]
            scaled = True
        out[name] = seconds
    ref_cpu = (reference.get("machine") or {}).get("cpu") or "an unrecorded CPU"
    basis = (f"scaled from the reference run on {ref_cpu} by this CPU's training speed" if scaled else
             f"the reference run's stage times on {ref_cpu}, unscaled (no speed probe on both sides)")
    return out, basis


def recorded_training(generated_dir: Path) -> dict:
    """``{stage: seconds}``: the training time in each stage's result records (every seed of every model and arm, as
    first trained; :func:`hwlib.study.readme.recorded_training_seconds`), 0 where a stage has no results yet."""
    from hwlib.study.readme import recorded_training_seconds

    out = {}
    for nb in notebooks():
        path = Path(generated_dir) / f"{nb.stem}.json"
        out[nb.stem] = recorded_training_seconds(json.loads(path.read_text())) if path.exists() else 0.0
    return out


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def run_notebooks(profile: str, force: bool = False, timeout: int | None = None, overrides: dict | None = None,
                  start: str | None = None, verbose: bool = True, only: str | None = None, accept: bool = False,
                  probe: bool | None = None, retrain: bool = False, shard: str | None = None) -> dict:
    """Execute every stage not already up to date; return the pipeline record.

    ``start`` (a stage prefix such as ``"04"``) reruns that stage and every later one, and accepts the
    earlier stages' last successful outputs as they are (they must exist). ``only`` runs that one stage and
    leaves the others' records alone. ``accept`` runs nothing: it marks every stage that has run before as
    up to date with the current code (for a change known not to alter any result). ``verbose`` streams
    each notebook's output (training progress bars included) to the terminal.

    Every run is read from the profile's run store (:mod:`hwlib.study.store`) before anything is trained, so a stage whose
    runs are all stored trains nothing; ``retrain`` (``make report RETRAIN=1``) trains every run again and replaces
    its store file (it implies ``force``). ``pipeline.json`` records the store's runs before and after.

    ``shard`` (``"i/N"``, ``--shard``) splits the missing runs over N processes that share the store folder (several
    processes on one GPU, a job array on a cluster's shared disk): each trains the runs of its shard
    (:func:`hwlib.study.obtain.shard_of`) and waits for the others'; shard 0 writes the profile's figures and numbers,
    the others write theirs under ``runs/<profile>/shard-<i>/``.

    Before the first stage it runs, the pipeline probes this CPU's training speed (:func:`probe_speed`; by
    default for every profile but ``smoke``, whose stages are too short to scale) and prints the expected
    time of each stage to run and of the whole run (:func:`estimate_stages`). ``pipeline.json`` keeps, per
    stage, the seconds it took, the estimate made before it and the machine that ran it."""
    if verbose:
        import logging

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        log = logging.getLogger("papermill")
        log.handlers[:] = [handler]
        log.setLevel(logging.INFO)
        log.propagate = False
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if shard is not None:
        from hwlib.study.obtain import SHARD_ENV, parse_shard

        parse_shard(shard)
        os.environ[SHARD_ENV] = shard
    P = load_profile(profile, **(overrides or {}))
    parameters = {"profile": profile, "overrides": overrides or {}}
    own = P.shard_dir or P.run_dir                 # a worker shard keeps its executed notebooks and state apart
    out_dir = own / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = own / "pipeline_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() and not force else {}
    # within a stage, a model whose training already finished with the same config (a killed or timed-out run)
    # is loaded, not retrained; --force retrains everything
    from hwlib.study.obtain import RETRAIN_ENV, REUSE_ENV
    from hwlib.study.store import RunStore, size_bytes

    force = force or retrain
    os.environ[REUSE_ENV] = "0" if force else "1"
    os.environ[RETRAIN_ENV] = "1" if retrain else "0"
    runs_before = len(RunStore(P.store).records())
    print(f"run store {P.store.relative_to(REPO_ROOT) if P.store.is_relative_to(REPO_ROOT) else P.store}: "
          f"{runs_before} runs ({size_bytes(P.store) / 1e6:.1f} MB); "
          + ("every run is trained again (--retrain)" if retrain else "only runs missing from it are trained"),
          flush=True)
    keys = stage_keys(profile, parameters)
    record_path = P.generated_dir / "pipeline.json"
    recorded = json.loads(record_path.read_text()).get("stages", {}) if record_path.exists() else {}
    reference = json.loads(record_path.read_text()) if record_path.exists() else {}
    reference["_legacy_probe"] = legacy_probe(P.generated_dir)
    reference["_training"] = recorded_training(P.generated_dir)
    stages, t_all = {}, time.perf_counter()
    nbs = notebooks()
    for nb in nbs:
        check_parameters(nb, parameters)
    to_run = [] if accept else _stages_to_run(nbs, state, keys, start, only)
    current_probe, estimates = None, {}
    trains = any(STAGE_WORKLOAD.get(n[:2]) for n in to_run)
    if trains and (probe if probe is not None else profile != "smoke"):
        print("probing this CPU's training speed ...", flush=True)
        current_probe = probe_speed(profile, overrides=overrides)
    this_machine = stage_machine(profile, current_probe, overrides)
    if to_run:
        estimates, basis = estimate_stages(reference, current_probe, to_run)
        if_reused, _ = estimate_stages({**reference, "_training": {}}, current_probe, to_run)
        _print_estimate(profile, estimates, basis, this_machine, if_reused,
                        _store_training(P) if trains and profile != "smoke" else None)
    for i, nb in enumerate(nbs, 1):
        name = nb.stem
        prev = state.get(name, {})
        if accept or (only is not None and not name.startswith(only)):
            if accept and "seconds" not in prev and name in recorded:
                prev = state[name] = {"seconds": recorded[name], "finished": "accepted from pipeline.json"}
            if "seconds" not in prev and name in recorded and not accept:
                stages[name] = recorded[name]                 # not rerun: its outputs are an earlier run's (stale)
                print(f"[{i}/{len(nbs)}] {name}: not selected (outputs of an earlier run, not up to date)", flush=True)
                continue
            if "seconds" in prev:
                if accept:
                    prev["key"] = keys[name]
                    atomic_write_text(state_path, json.dumps(state, indent=2))
                stages[name] = prev["seconds"]
            elif accept:
                raise SystemExit(f"--accept: stage {name} has never run successfully at profile {profile}")
            print(f"[{i}/{len(nbs)}] {name}: {'accepted as up to date' if accept else 'not selected'}", flush=True)
            continue
        before_start = start is not None and name < start and not name.startswith(start)
        if before_start:
            if "seconds" not in prev:
                raise SystemExit(f"--from {start}: earlier stage {name} has never run successfully at profile {profile}")
            prev["key"] = keys[name]
        if prev.get("key") == keys[name] and (start is None or before_start) and only is None:
            stages[name] = prev["seconds"]
            print(f"[{i}/{len(nbs)}] {name}: up to date, skipped (last run {prev['seconds']:.0f} s)", flush=True)
            continue
        est = estimates.get(name)
        print(f"[{i}/{len(nbs)}] {name}: running ..." + (f" (expected about {_fmt_duration(est)})" if est else ""),
              flush=True)
        # this stage's outputs are about to change: it and every later stage are stale until they finish
        for later in (nbs[i - 1:] if only is None else [nb]):
            state.pop(later.stem, None)
        atomic_write_text(state_path, json.dumps(state, indent=2))
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(str(nb), str(out_dir / nb.name), parameters=parameters, kernel_name="python3",
                                       cwd=str(REPO_ROOT), execution_timeout=timeout, progress_bar=False,
                                       log_output=verbose)
        except PapermillExecutionError as e:
            raise SystemExit(f"pipeline stopped: {name} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
                             f"executed copy with the traceback: {out_dir / nb.name}") from None
        seconds = time.perf_counter() - t0
        stages[name] = seconds
        state[name] = {"key": keys[name], "seconds": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "estimate": est, "machine": this_machine}
        atomic_write_text(state_path, json.dumps(state, indent=2))
        vs = f"; estimate {est:.0f} s, {seconds / est - 1:+.0%}" if est else ""
        print(f"[{i}/{len(nbs)}] {name}: done in {seconds:.0f} s{vs} (pipeline {time.perf_counter() - t_all:.0f} s)",
              flush=True)
    record = {"profile": profile, "stages": stages, "total_seconds": sum(stages.values()), "machine": machine_info(),
              "wall_seconds": time.perf_counter() - t_all,
              "store": {"runs_before": runs_before, "runs_after": len(RunStore(P.store).records()),
                        "megabytes": size_bytes(P.store) / 1e6, "retrain": retrain}}
    # per stage: the estimate made before it ran and the machine that ran it (a stage not rerun keeps its own;
    # one recorded before machines were, gets the speed of its machine from that machine's benchmark)
    record["stage_machines"], record["estimates"] = {}, {}
    for name in stages:
        st = state.get(name, {})
        old = (reference.get("stage_machines") or {}).get(name)
        record["stage_machines"][name] = (st.get("machine") or old
                                          or {"recorded": False, "probe": reference["_legacy_probe"]})
        record["estimates"][name] = st["estimate"] if "estimate" in st else (reference.get("estimates") or {}).get(name)
    record["estimate_error"] = {n: stages[n] / e - 1 for n, e in record["estimates"].items() if e}
    # stages whose outputs come from the current code and parameters (the others: an earlier run's)
    record["up_to_date"] = {n: state.get(n, {}).get("key") == keys[n] for n in stages}
    known = [m for m in record["stage_machines"].values() if m.get("recorded", True)]
    record["one_machine"] = len(known) == len(stages) and len({json.dumps(_machine_identity(m)) for m in known}) == 1
    atomic_write_text(P.generated_dir / "pipeline_machines.tex", machines_sentence(record))
    from hwlib.study.report import write_results

    write_results(P.generated_dir, "pipeline", record, prefix="Pipe", digits=0)
    print(f"notebooks done: {record['total_seconds']:.0f} s of notebook time over {len(stages)} stages")
    return record


def _stages_to_run(nbs, state, keys, start, only) -> list[str]:
    """The stages the loop in :func:`run_notebooks` will execute (same rules), for the estimate printed first."""
    out = []
    for nb in nbs:
        name, prev = nb.stem, state.get(nb.stem, {})
        if only is not None:
            if name.startswith(only):
                out.append(name)
            continue
        if start is not None and name < start and not name.startswith(start):
            continue
        if out or start is not None or prev.get("key") != keys[name]:
            out.append(name)                                    # a rerun stage invalidates every later one
    return out


def _store_training(P) -> dict | None:
    """What the run store lacks at profile ``P`` and the training it takes on this CPU (:func:`hwlib.study.stages.store_status`:
    the missing runs' own images over this CPU's measured speed), or ``None`` where it cannot be told."""
    from hwlib.study.stages import store_status

    try:
        return store_status(P)["total"]
    except Exception as e:                                  # an estimate never stops a build
        print(f"  (the run store's training estimate failed: {type(e).__name__}: {e})", flush=True)
        return None


def _print_estimate(profile, estimates: dict, basis: str, machine: dict, if_reused: dict | None = None,
                    training: dict | None = None) -> None:
    known = {n: e for n, e in estimates.items() if e is not None}
    probe = machine["probe"]
    kind = ({"fp32-only": "no native bf16", "avx512_bf16": "AVX512-BF16", "amx": "AMX"}[machine["cpu_kind"]]
            + f", training in {machine['precision']}")
    if probe:
        print(f"  speed probe ({probe['seconds']:.0f} s, {probe['precision']}): detector {probe['detector_img_s']:.1f} "
              f"images/s, heatmap model {probe['keypoint_img_s']:.1f} images/s", flush=True)
    for n, e in estimates.items():
        low = (if_reused or {}).get(n)
        reuse = (f" if its models train (about {_fmt_duration(low)} where their finished runs are under runs/)"
                 if e is not None and low is not None and low < 0.9 * e else "")
        print(f"  {n}: " + (f"about {_fmt_duration(e)}{reuse}" if e is not None else "no reference time"), flush=True)
    if training is not None:
        todo = training["missing"] + training["stale"]
        unmeasured = f" (+ {training['unmeasured']} run(s) of an unmeasured speed)" if training.get("unmeasured") else ""
        print(f"  run store: {training['stored']} of {training['runs']} runs stored; training the other {todo} "
              f"({training['missing']} missing, {training['stale']} stale) takes about "
              f"{_fmt_duration(training['hours_left'] * 3600)} on this CPU{unmeasured}, from their images and this "
              "CPU's measured speed (python -m hwlib.stages status)", flush=True)
        reused = {n: e for n, e in (if_reused or {}).items() if e is not None}
        if reused:
            total = sum(reused.values()) + training["hours_left"] * 3600
            print(f"expected: about {_fmt_duration(total)} for {len(estimates)} stage(s) at profile {profile} on this "
                  f"CPU ({kind}): that training, and the notebooks' own time with every run stored ({basis})",
                  flush=True)
            return
    if known:
        missing = f" (+ {len(estimates) - len(known)} stage(s) without a reference)" if len(known) < len(estimates) else ""
        print(f"expected: about {_fmt_duration(sum(known.values()))} of notebook time for {len(estimates)} stage(s) "
              f"at profile {profile} "
              f"on this CPU ({kind}){missing}; {basis}", flush=True)
    else:
        print(f"expected time unknown: no earlier run of profile {profile} to scale from ({kind})", flush=True)


def _machine_identity(m: dict) -> dict:
    return {k: m.get(k) for k in ("cpu", "bf16_native", "threads", "precision")}


def machines_sentence(record: dict) -> str:
    """A LaTeX sentence for the report's reproducibility section: one machine for every stage, or which ran which."""
    from hwlib.study.report import tex_escape

    def describe(m):
        parts = [tex_escape(str(m.get("cpu") or "unrecorded CPU"))]
        if "threads" in m:
            parts.append(f"{m['threads']} threads")
        if "precision" in m:
            parts.append(m["precision"] + ("" if m.get("bf16_native", True) else ", no native bf16"))
        return ", ".join(parts)

    machines = record.get("stage_machines") or {}
    if not machines:
        return "%\n"
    stale = [n[:2] for n, ok in (record.get("up_to_date") or {}).items() if not ok]
    note = (f" Not rerun with the current code: stage{'s' if len(stale) > 1 else ''} {', '.join(stale)} (outputs of an "
            f"earlier run; the next \\texttt{{make report}} reruns {'them' if len(stale) > 1 else 'it'})." if stale else "")
    if record.get("one_machine"):
        return f"Every stage ran on one machine ({describe(next(iter(machines.values())))}).{note}\n"
    items = "; ".join(f"stage {tex_escape(n[:2])}: " + (describe(m) if m.get("recorded", True) else "machine not recorded")
                      for n, m in machines.items())
    return f"The stages did not all run on one recorded machine, so their times are not one machine's: {items}.{note}\n"


def refresh_zoo(profile: str) -> bool:
    """After a run of the committed profile: rebuild ``models/`` (bf16 copies of the seed-0 headline checkpoints,
    evaluated on the test split, see :mod:`hwlib.study.zoo`) when a source checkpoint is newer than the manifest.
    Returns whether it exported."""
    from hwlib.study.zoo import MANIFEST, ZOO, export_zoo

    P = load_profile(profile)
    out = REPO_ROOT / "models"
    sources = [P.run_dir / f for f in ZOO.values()]
    if not all(p.exists() for p in sources):
        print(f"model zoo not refreshed: {sum(not p.exists() for p in sources)} checkpoint(s) of the run missing "
              f"under {P.run_dir.relative_to(REPO_ROOT)}/", flush=True)
        return False
    manifest = out / MANIFEST
    if manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in sources):
        return False
    t0 = time.perf_counter()
    print("model zoo: exporting the seed-0 headline models in bf16 and evaluating them on the test split ...", flush=True)
    export_zoo(P.run_dir, out)
    print(f"model zoo: {out.relative_to(REPO_ROOT)}/ written ({time.perf_counter() - t0:.0f} s)", flush=True)
    return True


def build_pdf(profile: str) -> Path:
    """latexmk the report against the profile's figures and generated numbers (macros refreshed from the JSON)."""
    if shutil.which("latexmk") is None:
        raise SystemExit("latexmk not found: run `make setup` (as root it installs TeX), or: apt-get update && "
                         "apt-get install -y latexmk texlive-latex-recommended texlive-fonts-recommended texlive-science")
    P = load_profile(profile)
    refresh_macros(P.generated_dir)
    if P.committed:
        out_dir, target = REPORT_DIR / "build", REPORT_DIR / "report.pdf"
        pretex = ""
    else:
        out_dir, target = P.run_dir / "latex", P.run_dir / "report.pdf"
        pretex = (f"\\def\\GenDir{{{P.generated_dir.as_posix()}/}}\\def\\FigDir{{{P.figures_dir.as_posix()}/}}"
                  f"\\def\\ProfileName{{{profile}}}")
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
           f"-outdir={out_dir}"]
    if pretex:
        cmd += [f"-pretex={pretex}", "-usepretex"]
    cmd.append("report.tex")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPORT_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        log = r.stdout.splitlines()
        errors = [l for l in log if ".tex:" in l or l.startswith("!")][:10]
        raise SystemExit("latexmk failed:\n" + "\n".join(errors or log[-30:]))
    tmp = target.with_suffix(".pdf.tmp")
    shutil.copyfile(out_dir / "report.pdf", tmp)
    os.replace(tmp, target)
    print(f"PDF: {target.relative_to(REPO_ROOT)} ({time.perf_counter() - t0:.0f} s)")
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", help=f"one of {', '.join(PROFILES)} (default cpu)")
    ap.add_argument("--force", action="store_true", help="rerun every stage")
    ap.add_argument("--shard", metavar="I/N", help="train only shard I of N of the missing runs (N processes sharing "
                    "the run store; the others' runs are waited for)")
    ap.add_argument("--retrain", action="store_true",
                    help="train every run again, ignoring (and replacing) the run store's records; implies --force")
    ap.add_argument("--from", dest="start", metavar="NN", help="rerun from stage NN (e.g. 04) on, keeping earlier stages")
    ap.add_argument("--only", metavar="NN", help="run only stage NN")
    ap.add_argument("--accept", action="store_true",
                    help="run nothing; mark stages that ran before as up to date with the current code")
    ap.add_argument("--pdf", action="store_true", help="also build the PDF")
    ap.add_argument("--pdf-only", action="store_true", help="only build the PDF")
    ap.add_argument("--timeout", type=int, default=None,
                    help="per-cell execution timeout in seconds (default: none; a training cell can take hours on a slow CPU)")
    ap.add_argument("--quiet", action="store_true", help="do not stream the notebooks' output")
    ap.add_argument("--probe", action=argparse.BooleanOptionalAction, default=None,
                    help="probe this CPU's training speed for the time estimate (default: on, except at smoke)")
    args = ap.parse_args(argv)
    if args.profile not in PROFILES:
        ap.error(f"unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    t0 = time.perf_counter()
    if not args.pdf_only:
        run_notebooks(args.profile, args.force, args.timeout, start=args.start, verbose=not args.quiet,
                      only=args.only, accept=args.accept, probe=args.probe, retrain=args.retrain,
                      shard=args.shard)
        if load_profile(args.profile).committed:
            from hwlib.study.readme import update_readme

            from hwlib.study.bench import refresh_accuracy

            refresh_zoo(args.profile)
            refresh_accuracy(args.profile)
            update_readme()
    if args.pdf or args.pdf_only:
        build_pdf(args.profile)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0
