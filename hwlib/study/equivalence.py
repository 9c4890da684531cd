"""Changes on the training path that keep results keep their stored runs, with evidence.

A stored run's training key names the code that trained it (:func:`hwlib.study.codes.training_code`). A change to
that code (a new option at its neutral value, a clean-up) is a new code; the runs stored under the old one would be
trained again. This module accepts the new code as *equivalent* only where stored runs, retrained under it,
reproduce their records (:func:`hwlib.study.verify.verify`: bit-identical where the CPU kind and precision are the
record's, within tolerance otherwise), and writes that evidence to a committed file
(``results/equivalence.json``): which code replaced which, for which task, the runs retrained, their stored and
retrained values, and the machine. The store then serves the old runs to the new code (:func:`accepted_codes`). A
change that moves a result is refused: its runs are stale, and the file says which and why::

    python -m hwlib.equivalence status                 # per task: the current code, stored runs current / accepted / stale
    python -m hwlib.equivalence prove [--task T] [--runs NAME ...] [--sample K]
                                                       # retrain a sample of each stale code's runs, accept or refuse
    python -m hwlib.equivalence rekey                  # carry runs stored under the first key scheme over

The file's format and its checks (an entry edited by hand, a proof run by another code: a clear error) are
:mod:`hwlib.study.accepted`'s, which the experiment layer reads to find the runs an accepted change serves.
"""

from __future__ import annotations

import argparse
import datetime
import random
import sys
from pathlib import Path

from hwlib.study.accepted import (ACCEPTING, EQUIVALENCE_FILE, TASKS, EquivalenceError, entry_digest, write_entries,
                                  accepted_codes, check_entry, equivalence_file, load, refusal)


# ----------------------------------------------------------------------------- the store under the current code
def classify(records, entries=None) -> dict:
    """``{task: {"code", "current": [...], "accepted": [...], "stale": {old code: [...]}}}``: each stored run by
    whether the current code trained it, an accepted equivalent did, or another code did (stale)."""
    from hwlib.study.codes import training_code

    out = {}
    for task in TASKS:
        code = training_code(task)
        ok = accepted_codes(task, code, entries)
        row = {"code": code, "current": [], "accepted": [], "stale": {}}
        for r in records:
            if r.data["task"] != task:
                continue
            if r.data["code"] == code:
                row["current"].append(r)
            elif r.data["code"] in ok:
                row["accepted"].append(r)
            else:
                row["stale"].setdefault(r.data["code"], []).append(r)
        out[task] = row
    return out


def stale_reason(rec, entries=None) -> str:
    """Why a stored run no longer serves the current code: what changed, by name, and a refused proof if any."""
    from hwlib.study.codes import training_code, training_parts
    from hwlib.study.store import changed_code

    task = rec.data["task"]
    changed = changed_code(rec.data, training_parts(task))
    what = (f"training code changed since ({', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''})" if changed
            else "training code changed since")
    refused = refusal(task, rec.data["code"], training_code(task), entries)
    if refused:
        bad = [p for p in refused["proofs"] if p["verdict"] not in ACCEPTING]
        what += (f"; the change was refused on {refused['accepted']}: {bad[0]['name']} retrained "
                 f"{bad[0]['verdict']} (largest difference {bad[0]['max_abs']:.3g})")
    return what


# ----------------------------------------------------------------------------- proving a change
def prove(store, task: str, runs=None, sample: int = 1, seed: int = 0, tolerance=None, path=EQUIVALENCE_FILE,
          device: str = "auto", precision: str = "auto", progress: bool = True) -> list[dict]:
    """Retrain stored runs of ``task`` whose code is neither the current one nor accepted as equivalent, under the
    current code, and write the verdict to the equivalence file: one entry per old code, **accepted** where every
    retrained run reproduces its record, else **refused** (its runs stay stale). ``runs``: names of the runs to
    retrain (default: ``sample`` drawn with ``seed`` per old code and method: a change to one method's code is proved
    by that method's runs; named runs must cover every method of the old code's runs). Returns the new entries."""
    from hwlib.study.codes import training_code, training_parts
    from hwlib.study.store import changed_code
    from hwlib.study.verify import verify

    entries = load(path)
    code = training_code(task)
    stale = classify(store.records(), entries)[task]["stale"]
    made = []
    for old, recs in stale.items():
        if runs:
            chosen = [r for r in recs if r.name in runs]
            if not chosen:
                continue
        else:                                          # every method the change touches proves itself
            rng, chosen = random.Random(seed), []
            for method in sorted({r.data["method"] for r in recs}):
                mine = sorted((r for r in recs if r.data["method"] == method), key=lambda r: r.name)
                chosen += rng.sample(mine, min(sample, len(mine)))
        unproved = sorted({r.data["method"] for r in recs} - {r.data["method"] for r in chosen})
        if unproved:
            raise EquivalenceError(f"{task} code {old}: its stored runs include {unproved} runs, and none of them is "
                                   "among the runs to retrain: name one of each method (--runs)")
        proofs = []
        for rec in chosen:
            r = verify(rec, tolerance, device, precision, progress, store=store)
            proofs.append({"name": rec.name, "training_key": rec.key, "stored_code": old, "code": code,
                           "verdict": r["verdict"], "same_machine": r["same_machine"], "max_abs": r["max_abs"],
                           "curve_max_abs": r["validation"]["max_abs"], "machine": r["machine"],
                           "stored_machine": r["stored_machine"], "precision": r["precision"],
                           "stored_precision": r["stored_precision"], "seconds": r["seconds"],
                           "reported": [{"value": label, "stored": a, "retrained": b, "tolerance": t}
                                        for label, a, b, t in r["reported"]]})
        entry = {"task": task, "from_code": old, "to_code": code,
                 "verdict": "accepted" if all(p["verdict"] in ACCEPTING for p in proofs) else "refused",
                 "changed": changed_code(recs[0].data, training_parts(task)), "runs_served": len(recs),
                 "accepted": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "proofs": proofs}
        entry["digest"] = entry_digest(entry)
        entries = [e for e in entries if not (e["task"] == task and e["from_code"] == old and e["to_code"] == code)]
        entries.append(check_entry(entry, "new entry"))
        write_entries(entries, path)
        made.append(entry)
    return made


def format_entry(e: dict) -> str:
    lines = [f"{e['task']}: code {e['from_code']} -> {e['to_code']}: {e['verdict'].upper()} "
             f"({e['runs_served']} stored run(s); changed: {', '.join(e['changed'][:8]) or '?'})"]
    for p in e["proofs"]:
        m = p["machine"]
        lines.append(f"  {p['name']}: {p['verdict']} on {m.get('cpu', '?')} [{m.get('cpu_kind', '?')}], "
                     f"{p['precision']} (stored: {p['stored_machine'].get('cpu_kind', '?')}, {p['stored_precision']})")
        for row in p["reported"]:
            lines.append(f"    {row['value']:44s} stored {row['stored']:.6f}  retrained {row['retrained']:.6f}"
                         f"  tolerance {row['tolerance']:.4f}")
        lines.append(f"    validation curve: largest difference {p['curve_max_abs']:.3g}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the first key scheme
def rekey(store) -> list[str]:
    """Carry runs stored under the store's first key scheme (names with their module: a moved function orphaned
    them) over to the location-free one, where the code that trained them is provably today's: a run whose
    ``code`` is the first scheme's hash of today's training path gets today's code, parts and training key (its old
    key kept as ``rekeyed_from``), and each evaluation whose spec names the first scheme's hash of today's
    evaluation code gets today's. Nothing else changes. Returns the names of the runs carried over."""
    from hwlib.study.codes import EVAL_PATH, TRAINING_PATH, eval_code, training_code, training_parts
    from hwlib.study.store import code_closure, evaluation_key, parts_digest

    old_train = {t: parts_digest(code_closure(TRAINING_PATH[t], located=True)) for t in TASKS}
    old_eval = {k: parts_digest(code_closure(EVAL_PATH[k], located=True)) for k in EVAL_PATH}
    moved = []
    for rec in store.records():
        d, task = rec.data, rec.data["task"]
        evals = {}
        for k, e in d["evaluations"].items():
            kind = e["spec"].get("kind")
            if kind in old_eval and e["spec"].get("code") == old_eval[kind] != eval_code(kind):
                spec = {**e["spec"], "code": eval_code(kind)}
                evals[evaluation_key(spec)] = {**e, "spec": spec}
            else:
                evals[k] = e
        new = {**d, "evaluations": evals}
        if d["code"] == old_train[task] != training_code(task):
            new.update(code=training_code(task), code_parts=training_parts(task),
                       rekeyed_from={"training_key": d["training_key"], "code": d["code"]})
        if new == d:
            continue
        from hwlib.study.store import _key_fields, _sha

        new["training_key"] = _sha(_key_fields(task, new["method"], new["config"], new["seed"],
                                               new.get("world_size", 1), new["code"]))
        old_path = rec.path
        put = store.put(new)
        if old_path is not None and old_path != put.path and old_path.exists():
            old_path.unlink()
        moved.append(rec.name)
    return moved


# ----------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    from hwlib.config import load_profile
    from hwlib.study.store import RunStore, StoreError

    ap = argparse.ArgumentParser(prog="python -m hwlib.equivalence", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    st_ = sub.add_parser("status", help="per task: stored runs of the current code, of accepted codes, stale")
    pr = sub.add_parser("prove", help="retrain a sample of each stale code's runs; accept or refuse the change")
    pr.add_argument("--task", choices=TASKS, action="append", help="only this task (default: every task)")
    pr.add_argument("--runs", nargs="+", metavar="NAME", help="retrain these stored runs (default: --sample)")
    pr.add_argument("--sample", type=int, default=1, metavar="K", help="runs drawn per old code (default 1)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--tolerance", type=float, help="instead of the seed-to-seed spread (hwlib.study.verify)")
    pr.add_argument("--no-progress", action="store_true")
    rk = sub.add_parser("rekey", help="carry runs of the first key scheme over to the location-free one")
    for p in (st_, pr, rk):
        p.add_argument("--profile", default="cpu")
        p.add_argument("--store", type=Path, help="a store folder instead of the profile's")
        p.add_argument("--file", type=Path, help="the equivalence file (default: equivalence.json beside the store)")
    args = ap.parse_args(argv)
    P = load_profile(args.profile)
    store = RunStore(args.store or P.store)
    args.file = args.file or equivalence_file(store.root)
    try:
        if args.command == "rekey":
            moved = rekey(store)
            print(f"{len(moved)} stored run(s) carried over to the location-free keys" + (": " + ", ".join(moved)
                                                                                           if moved else ""))
            return 0
        entries = load(args.file)
        if args.command == "status":
            for task, row in classify(store.records(), entries).items():
                n_stale = sum(map(len, row["stale"].values()))
                print(f"{task}: code {row['code']}: {len(row['current'])} stored run(s) of this code, "
                      f"{len(row['accepted'])} of accepted equivalent code(s), {n_stale} stale")
                for old, recs in row["stale"].items():
                    print(f"  stale, code {old}: {len(recs)} run(s) ({', '.join(r.name for r in recs[:4])}"
                          f"{' ...' if len(recs) > 4 else ''}): {stale_reason(recs[0], entries)}")
            return 0
        bad = 0
        for task in args.task or TASKS:
            for e in prove(store, task, args.runs, args.sample, args.seed, args.tolerance, args.file,
                           P.device, P.precision, not args.no_progress):
                print(format_entry(e), flush=True)
                bad += e["verdict"] == "refused"
        return 1 if bad else 0
    except (StoreError, EquivalenceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
