"""Run the numbered notebooks in order with papermill, then build the PDF.

    python -m hwlib.pipeline --profile cpu            # what `make report` runs
    python -m hwlib.pipeline --profile smoke --pdf    # CI: notebooks at smoke scale + the PDF
    python -m hwlib.pipeline --profile cpu --force    # rerun every stage

Each stage executes ``notebooks/NN_*.ipynb`` with ``-p profile NAME`` on the ``python3`` kernel, cwd the
repository root, and writes the executed copy to ``runs/<profile>/notebooks/``. A stage is skipped when
its notebook, the hwlib sources, the parameters and every earlier stage are unchanged since its last
successful run (the state lives in ``runs/<profile>/pipeline_state.json``), so an interrupted run resumes
at the stage it stopped in. A failing notebook stops the pipeline with its name, the failing cell and
the error. Stage times go to ``pipeline.json`` in the profile's generated folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .config import NOTEBOOKS_DIR, PROFILES, REPO_ROOT, REPORT_DIR, load_profile
from .report import atomic_write_text, refresh_macros

HWLIB_DIR = Path(__file__).resolve().parent
# modules no notebook imports: changing them does not change any stage's results
NOT_IN_NOTEBOOKS = {"pipeline.py", "bench.py", "readme.py", "run.py"}


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
    """A key per stage: its notebook's sources + hwlib sources + parameters + the previous stage's key."""
    code = _digest(sorted(p for p in HWLIB_DIR.glob("*.py") if p.name not in NOT_IN_NOTEBOOKS))
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


def machine_info() -> dict:
    import torch

    from .train import bf16_native, cpu_flags

    model = ""
    try:
        model = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                      if l.startswith("model name")), "")
    except OSError:
        pass
    flags = cpu_flags()
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "bf16_native": bf16_native(), "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "cuda": torch.cuda.is_available(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}


def run_notebooks(profile: str, force: bool = False, timeout: int = 3600, overrides: dict | None = None,
                  start: str | None = None, verbose: bool = True, only: str | None = None, accept: bool = False) -> dict:
    """Execute every stage not already up to date; return the pipeline record.

    ``start`` (a stage prefix such as ``"04"``) reruns that stage and every later one, and accepts the
    earlier stages' last successful outputs as they are (they must exist). ``only`` runs that one stage and
    leaves the others' records alone. ``accept`` runs nothing: it marks every stage that has run before as
    up to date with the current code (for a change known not to alter any result). ``verbose`` streams
    each notebook's output (training progress bars included) to the terminal."""
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

    P = load_profile(profile, **(overrides or {}))
    parameters = {"profile": profile, "overrides": overrides or {}}
    out_dir = P.run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = P.run_dir / "pipeline_state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() and not force else {}
    keys = stage_keys(profile, parameters)
    record_path = P.generated_dir / "pipeline.json"
    recorded = json.loads(record_path.read_text()).get("stages", {}) if record_path.exists() else {}
    stages, t_all = {}, time.perf_counter()
    nbs = notebooks()
    for i, nb in enumerate(nbs, 1):
        check_parameters(nb, parameters)
        name = nb.stem
        prev = state.get(name, {})
        if accept or (only is not None and not name.startswith(only)):
            if accept and "seconds" not in prev and name in recorded:
                prev = state[name] = {"seconds": recorded[name], "finished": "accepted from pipeline.json"}
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
        print(f"[{i}/{len(nbs)}] {name}: running ...", flush=True)
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
        state[name] = {"key": keys[name], "seconds": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_text(state_path, json.dumps(state, indent=2))
        print(f"[{i}/{len(nbs)}] {name}: done in {seconds:.0f} s (pipeline {time.perf_counter() - t_all:.0f} s)", flush=True)
    record = {"profile": profile, "stages": stages, "total_seconds": sum(stages.values()), "machine": machine_info()}
    from .report import write_results

    write_results(P.generated_dir, "pipeline", record, prefix="Pipe", digits=0)
    print(f"notebooks done: {record['total_seconds']:.0f} s of notebook time over {len(stages)} stages")
    return record


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
    ap.add_argument("--from", dest="start", metavar="NN", help="rerun from stage NN (e.g. 04) on, keeping earlier stages")
    ap.add_argument("--only", metavar="NN", help="run only stage NN")
    ap.add_argument("--accept", action="store_true",
                    help="run nothing; mark stages that ran before as up to date with the current code")
    ap.add_argument("--pdf", action="store_true", help="also build the PDF")
    ap.add_argument("--pdf-only", action="store_true", help="only build the PDF")
    ap.add_argument("--timeout", type=int, default=3600, help="per-cell execution timeout in seconds")
    ap.add_argument("--quiet", action="store_true", help="do not stream the notebooks' output")
    args = ap.parse_args(argv)
    if args.profile not in PROFILES:
        ap.error(f"unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    t0 = time.perf_counter()
    if not args.pdf_only:
        run_notebooks(args.profile, args.force, args.timeout, start=args.start, verbose=not args.quiet,
                      only=args.only, accept=args.accept)
        if load_profile(args.profile).committed:
            from .readme import update_readme

            update_readme()
    if args.pdf or args.pdf_only:
        build_pdf(args.profile)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
