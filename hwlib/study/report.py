"""What the report reads: results as JSON with a LaTeX twin of ``\\newcommand`` macros, tables, figures.

Every file is written atomically (:mod:`hwlib.io`): a run killed mid-write leaves either the old file or the
complete new one, never half of one.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from hwlib.io import atomic_write_bytes, atomic_write_text, to_jsonable

_DIGITS = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine"]


def save_figure(fig, path, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the suffix), without a creation date in PDFs, so the
    same figure gives the same bytes on every run."""
    import io

    path = Path(path)
    fmt = path.suffix.lstrip(".")
    if fmt == "pdf":
        kwargs.setdefault("metadata", {"CreationDate": None})
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, bbox_inches="tight", **kwargs)
    return atomic_write_bytes(path, buf.getvalue())


def macro_name(prefix: str, key_path) -> str:
    """``("DetTrain", ["ap_standard", "circle"])`` -> ``DetTrainApStandardCircle``; digits are spelled out
    (``"0.05"`` -> ``ZeroZeroFive``) because LaTeX macro names are letters only."""
    parts = []
    for key in key_path:
        for word in re.split(r"[^A-Za-z0-9]+", str(key)):
            word = "".join(_DIGITS[int(ch)] if ch.isdigit() else ch for ch in word)
            if word:
                parts.append(word[0].upper() + word[1:])
    return prefix + "".join(parts)


def _fmt(value, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "{,}")
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        # as many decimals as a reader needs: 0.957, but 186.9 s and 3127 s rather than 186.927 and 3127.482
        if abs(value) >= 1000:
            digits = 0
        elif abs(value) >= 10:
            digits = min(digits, 1)
        return f"{value:.{digits}f}"
    return tex_escape(str(value))


def tex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(ch, ch) for ch in text)


def _flatten(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(v, path + (k,))
    elif isinstance(obj, (list, tuple)) and len(obj) <= 12 and all(isinstance(v, (int, float, str)) for v in obj):
        for i, v in enumerate(obj):
            yield from _flatten(v, path + (str(i),))
    elif isinstance(obj, (int, float, str, bool)):
        yield path, obj


def write_results(generated_dir, name: str, results: dict, prefix: str, digits: int = 3) -> Path:
    """Write ``<generated_dir>/<name>.json`` and its twin ``<name>.tex`` of macros.

    Every scalar leaf becomes ``\\newcommand{\\<Prefix><KeyPath>}{value}`` (floats to ``digits``
    decimals); the JSON keeps full precision. ``results`` must hold ``"profile"``.
    """
    if "profile" not in results:
        raise ValueError(f"results for {name} must record 'profile'")
    data = to_jsonable(results)
    generated_dir = Path(generated_dir)
    atomic_write_text(generated_dir / f"{name}.json", json.dumps(data, indent=2, sort_keys=False) + "\n")
    lines = [f"% generated from {name}.json by hwlib.study.report.write_results -- do not edit",
             f"% prefix={prefix} digits={digits}"]
    seen = set()
    for path, value in _flatten(data):
        macro = macro_name(prefix, path)
        if macro in seen:
            continue
        seen.add(macro)
        lines.append(f"\\newcommand{{\\{macro}}}{{{_fmt(value, digits)}}}")
    atomic_write_text(generated_dir / f"{name}.tex", "\n".join(lines) + "\n")
    return generated_dir / f"{name}.json"


def macro_settings(tex_path) -> tuple[str, int] | None:
    """``(prefix, digits)`` recorded in a macro twin written by :func:`write_results`, or ``None``."""
    try:
        head = Path(tex_path).read_text().splitlines()[:2]
    except OSError:
        return None
    m = re.fullmatch(r"% prefix=([A-Za-z]+) digits=(\d+)", head[1]) if len(head) > 1 else None
    return (m.group(1), int(m.group(2))) if m else None


def refresh_macros(generated_dir) -> list[str]:
    """Rewrite every macro twin ``<name>.tex`` from its ``<name>.json`` with the prefix and digits it was
    written with, so the PDF always shows what the JSON says. Returns the names refreshed."""
    done = []
    for js in sorted(Path(generated_dir).glob("*.json")):
        settings = macro_settings(js.with_suffix(".tex"))
        if settings:
            write_results(generated_dir, js.stem, json.loads(js.read_text()), prefix=settings[0], digits=settings[1])
            done.append(js.stem)
    return done


def write_table(generated_dir, name: str, header, rows, align: str | None = None, caption_note: str = "") -> Path:
    """Write a booktabs ``tabular`` fragment ``<generated_dir>/<name>.tex``.

    The first cell of each row is a plain-text label and is escaped for LaTeX; the other cells and the
    header are LaTeX already (numbers, ``$\\pm$``)."""
    align = align or "l" + "r" * (len(header) - 1)
    out = [f"% generated by hwlib.study.report.write_table -- do not edit", f"\\begin{{tabular}}{{{align}}}", "\\toprule",
           " & ".join(header) + r" \\", "\\midrule"]
    for row in rows:
        if row == "midrule":
            out.append("\\midrule")
        else:
            out.append(" & ".join([tex_escape(str(row[0]))] + [str(c) for c in row[1:]]) + r" \\")
    out += ["\\bottomrule", "\\end{tabular}"]
    if caption_note:
        out.append(caption_note)
    return atomic_write_text(Path(generated_dir) / f"{name}.tex", "\n".join(out) + "\n")


def read_results(generated_dir, name: str) -> dict:
    path = Path(generated_dir) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the notebook that writes it first")
    return json.loads(path.read_text())
