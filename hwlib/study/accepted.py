"""The equivalence file: which changes of the training code were proved to keep their stored runs' results.

``results/equivalence.json`` (beside the run store) lists, per task, changes ``from_code -> to_code`` of the training
code (:func:`hwlib.study.codes.training_code`) with the runs retrained to prove them and the verdict: *accepted*
(every proof run reproduced its record, so the new code serves the old code's stored runs,
:func:`accepted_codes`) or *refused* (its runs are stale). :mod:`hwlib.study.equivalence` writes it; this module reads
and checks it, and knows nothing of models or training::

    {"format": 1, "entries": [{"task", "from_code", "to_code", "verdict": "accepted" | "refused", "changed": [names],
      "runs_served", "accepted": date, "proofs": [{"name", "training_key", "stored_code", "code", "verdict",
      "same_machine", "max_abs", "curve_max_abs", "machine", "stored_machine", "precision", "stored_precision",
      "seconds", "reported": [{"value", "stored", "retrained", "tolerance"}]}], "digest"}]}

Checked whenever it is read: an entry edited by hand (its digest no longer matches its content), a proof run by
another code than the one the entry accepts, or an accepted entry whose proof did not reproduce its record is an
:class:`EquivalenceError` naming the entry.
"""

from __future__ import annotations

import json
from pathlib import Path

from hwlib.config import STORE_DIR

FORMAT = 1


def equivalence_file(store_root) -> Path:
    """The equivalence file of the run store in folder ``store_root``: ``equivalence.json`` beside it
    (``results/equivalence.json`` for the committed store)."""
    return Path(store_root).parent / "equivalence.json"


EQUIVALENCE_FILE = equivalence_file(STORE_DIR)
ACCEPTING = ("identical", "within tolerance")     # the verify verdicts that count as a reproduction
TASKS = ("detector", "keypoint")


class EquivalenceError(ValueError):
    """An equivalence file that cannot be trusted as it is: the message names the file, the entry and the defect."""


# ----------------------------------------------------------------------------- the file
def entry_digest(entry: dict) -> str:
    from hwlib.study.store import _sha

    return _sha({k: v for k, v in entry.items() if k != "digest"})[:16]


def check_entry(entry: dict, where: str) -> dict:
    """``entry`` checked: its fields, its digest (not edited by hand), its proofs made by the code it names and,
    for an accepted change, every proof a reproduction."""
    need = ("task", "from_code", "to_code", "verdict", "proofs", "digest")
    missing = [k for k in need if k not in entry]
    if missing:
        raise EquivalenceError(f"{where} lacks {missing}")
    if entry["digest"] != entry_digest(entry):
        raise EquivalenceError(f"{where} does not match its digest {entry['digest']!r}: edited by hand? "
                               "(prove the change again: python -m hwlib.equivalence prove)")
    if entry["task"] not in TASKS or entry["verdict"] not in ("accepted", "refused"):
        raise EquivalenceError(f"{where}: task {entry['task']!r} / verdict {entry['verdict']!r} unknown")
    if entry["from_code"] == entry["to_code"]:
        raise EquivalenceError(f"{where} names one code on both sides ({entry['to_code']})")
    if not entry["proofs"]:
        raise EquivalenceError(f"{where} has no proof run")
    for p in entry["proofs"]:
        if p.get("code") != entry["to_code"]:
            raise EquivalenceError(f"{where}: proof run {p.get('name')!r} was retrained by code {p.get('code')!r}, "
                                   f"not by the code {entry['to_code']} the entry is about")
        if p.get("stored_code") != entry["from_code"]:
            raise EquivalenceError(f"{where}: proof run {p.get('name')!r} is a run of code {p.get('stored_code')!r}, "
                                   f"not of {entry['from_code']}")
        if entry["verdict"] == "accepted" and p.get("verdict") not in ACCEPTING:
            raise EquivalenceError(f"{where}: accepted, but proof run {p.get('name')!r} says {p.get('verdict')!r}")
        if entry["verdict"] == "accepted" and p.get("same_machine") and p.get("verdict") != "identical":
            raise EquivalenceError(f"{where}: accepted, but proof run {p.get('name')!r} retrained on the machine kind "
                                   f"that trained it and was not identical")
    if entry["verdict"] == "refused" and all(p.get("verdict") in ACCEPTING for p in entry["proofs"]):
        raise EquivalenceError(f"{where}: refused, but every proof run reproduced its record")
    return entry


def load(path=EQUIVALENCE_FILE) -> list[dict]:
    """The checked entries of the equivalence file (``[]`` where there is none)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EquivalenceError(f"equivalence file {path} is truncated or not JSON ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), list):
        raise EquivalenceError(f"equivalence file {path} is not format {FORMAT} ({{'format', 'entries': [...]}})")
    return [check_entry(e, f"{path} entry {i} ({e.get('task')}, {e.get('from_code')} -> {e.get('to_code')})")
            for i, e in enumerate(data["entries"])]


def write_entries(entries: list[dict], path=EQUIVALENCE_FILE) -> None:
    from hwlib.io import atomic_write_text

    atomic_write_text(Path(path), json.dumps({"format": FORMAT, "entries": entries}, indent=1, sort_keys=True) + "\n")


def accepted_codes(task: str, code: str, entries=None, path=EQUIVALENCE_FILE) -> list[str]:
    """The older training codes of ``task`` accepted as equivalent to ``code``, nearest first (an accepted change
    from A to B and from B to C: C serves the runs of B and of A, unless the change from A to C itself was
    refused)."""
    entries = load(path) if entries is None else entries
    refused = {e["from_code"] for e in entries if e["task"] == task and e["verdict"] == "refused"
               and e["to_code"] == code}                   # refused against this very code: never served by a chain
    out, todo = [], [code]
    while todo:
        c = todo.pop(0)
        for e in entries:
            if (e["task"] == task and e["verdict"] == "accepted" and e["to_code"] == c and e["from_code"] not in out
                    and e["from_code"] != code and e["from_code"] not in refused):
                out.append(e["from_code"])
                todo.append(e["from_code"])
    return out


def stored_under_accepted(st, task: str, code: str, key_of) -> object:
    """The record of run store ``st`` that serves a run of ``task`` under training code ``code``: the one of its
    training key, or else the one of an older code accepted as equivalent (``key_of(code) -> training key``)."""
    rec = st.get(key_of(code))
    if rec is None:
        for old in accepted_codes(task, code, path=equivalence_file(st.root)):
            if (rec := st.get(key_of(old))) is not None:
                break
    return rec


def refusal(task: str, from_code: str, to_code: str, entries=None, path=EQUIVALENCE_FILE) -> dict | None:
    """The refused entry of the change ``from_code -> to_code`` of ``task``, or ``None``."""
    entries = load(path) if entries is None else entries
    return next((e for e in entries if e["task"] == task and e["verdict"] == "refused"
                 and e["from_code"] == from_code and e["to_code"] == to_code), None)
