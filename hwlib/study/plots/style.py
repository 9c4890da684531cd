"""One style for every figure: each is drawn at the size it is printed at (``FULL_WIDTH`` = ``\\textwidth``,
``HALF_WIDTH`` = ``0.49\\textwidth``), with no text below 7 pt at that size (``STYLE``), Okabe-Ito colours for every
categorical colour, and legends outside the data.

Text fits whatever the data: before a figure is saved, :func:`_fit_text` wraps y labels taller than their axes, x
labels wider than their panel and titles that would run into another axes (a colour bar, a neighbour), another title
or out of the figure; wraps, tilts or thins tick labels that would overlap; narrows figure legends wider than the
figure; and raises value labels (:func:`_value_label`) that would collide, extending the y range to keep them inside
the axes.
"""

from __future__ import annotations

import functools
import math

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() in ("", "agg") else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from hwlib.study.report import save_figure  # noqa: E402

FULL_WIDTH = 6.3     # inches: printed at \textwidth
HALF_WIDTH = 3.1     # inches: printed at 0.49\textwidth
MIN_FONT = 7         # pt: no text smaller than this at printed size

# Okabe & Ito (2008), colour-blind safe
OKABE_ITO = {"orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000"}
_OI = OKABE_ITO
PALETTE = (_OI["blue"], _OI["orange"], _OI["green"], _OI["vermillion"], _OI["purple"], _OI["sky_blue"],
           _OI["yellow"], _OI["black"])
CLASS_COLOURS = (_OI["vermillion"], _OI["blue"], _OI["green"])             # circle, square, triangle
HEAD_COLOURS = (_OI["sky_blue"], _OI["orange"], _OI["purple"])              # S1, S2, S3
METHOD_COLOURS = {"heatmap_argmax": _OI["blue"], "heatmap_dark": _OI["green"], "regression": _OI["vermillion"],
                  "integral": _OI["purple"]}
KEYPOINT_COLOURS = (_OI["green"], _OI["vermillion"], _OI["blue"], _OI["orange"], _OI["sky_blue"])
FAILURE_COLOURS = {"A": _OI["orange"], "B": _OI["blue"], "C": _OI["vermillion"]}
GT_COLOUR, PRED_COLOUR = _OI["green"], _OI["vermillion"]

STYLE = {
    "figure.dpi": 100, "savefig.dpi": 300, "savefig.pad_inches": 0.02,
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9,
    "lines.linewidth": 1.2, "lines.markersize": 4.5, "lines.markeredgewidth": 0.8,
    "errorbar.capsize": 2.5, "axes.linewidth": 0.6, "grid.linewidth": 0.4, "grid.alpha": 0.4,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "patch.linewidth": 0.6,
    "axes.prop_cycle": cycler(color=PALETTE), "legend.frameon": False, "legend.handlelength": 1.6,
    "pdf.fonttype": 42, "figure.constrained_layout.use": True,
}
plt.rcParams.update(STYLE)


def _styled(fn):
    """Draw (and save) the figure under ``STYLE`` whatever the caller's rcParams are."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def _figure(width, height, nrows=1, ncols=1, **kwargs):
    """A constrained-layout figure at its printed size."""
    kwargs.setdefault("squeeze", False)
    return plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", **kwargs)


def _legend_above(fig, handles=None, labels=None, ncol=None, **kwargs):
    """Figure legend above every axes (below them when the figure has a suptitle; constrained layout makes room for
    it), never over the data."""
    if handles is None:
        handles, labels = [], []
        for ax in fig.axes:
            for h, l in zip(*ax.get_legend_handles_labels()):
                if l not in labels and not l.startswith("_"):
                    handles.append(h)
                    labels.append(l)
    elif labels is None:
        labels = [h.get_label() for h in handles]
    if not handles:
        return None
    where = "outside lower center" if fig._suptitle is not None else "outside upper center"   # suptitle is on top
    return fig.legend(handles, labels, loc=where, ncol=ncol or len(handles), **kwargs)


VALUE_LABEL = "value-label"    # gid of the labels drawn by _value_label
_PAD = 1.5                     # pt: gap kept between texts that must not touch


def _value_label(ax, x, y, text, rotation=90, offset=1.5, **kwargs):
    """A value written just above the point ``(x, y)`` (e.g. a bar's top), ``offset`` points above it. Value labels
    of one axes never overlap: :func:`_fit_text` raises one that would touch a label to its left just above it and
    extends the y range so that every one stays inside the axes."""
    kwargs.setdefault("fontsize", MIN_FONT)
    ann = ax.annotate(text, (x, y), xytext=(0, offset), textcoords="offset points", rotation=rotation,
                      ha="center", va="bottom", rotation_mode="anchor" if rotation == 0 else "default",
                      annotation_clip=False, gid=VALUE_LABEL, **kwargs)
    ann.natural_xyann = ann.xyann          # where it goes when nothing is in the way (_fit_value_labels)
    return ann


def _log_x(ax):
    """A log x axis labelled in plain numbers at 1, 2 and 5 times each power of ten (10, 20, 50, 100, ...), the other
    ticks unlabelled: never the crowded ``3x10^1 4x10^1 ...`` of matplotlib's minor labels."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v < 1e3 else f"{v / 1000:g}k"))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(3.0, 4.0, 6.0, 7.0, 8.0, 9.0)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _finish(fig, path):
    _fit_text(fig)
    if path is not None:
        save_figure(fig, path)
    return fig


# --- fitting text to the space the layout gives it -------------------------------------------------------------------

def _words(text: str) -> list:
    """Words of one line, never splitting ``$...$`` (mathtext) apart."""
    words, cur, math_mode = [], "", False
    for ch in text:
        if ch == "$" and not cur.endswith("\\"):
            math_mode = not math_mode
        if ch == " " and not math_mode:
            if cur:
                words.append(cur)
            cur = ""
        else:
            cur += ch
    return words + ([cur] if cur else [])


def _length(t, s: str, renderer) -> float:
    """Length in pixels along its reading direction of ``s`` drawn as the text ``t`` (font, rotation) is."""
    old = t.get_text()
    t.set_text(s)
    bb = t.get_window_extent(renderer)
    t.set_text(old)
    return bb.height if 45 < (t.get_rotation() % 180) < 135 else bb.width


def _wrap(t, limit: float, renderer) -> str:
    """``t``'s text broken at spaces into as few lines as keep each within ``limit`` pixels, lines balanced (the
    longest as short as the fewest lines allow); existing line breaks are kept. A word longer than ``limit`` stays
    whole."""
    def greedy(words, lim, length):
        lines, cur = [], []
        for w in words:
            if cur and length(" ".join(cur + [w])) > lim:
                lines.append(cur)
                cur = [w]
            else:
                cur = cur + [w]
        return lines + ([cur] if cur else [])

    out = []
    for para in t.get_text().split("\n"):
        words = _words(para)
        cache = {}

        def length(s):
            if s not in cache:
                cache[s] = _length(t, s, renderer)
            return cache[s]

        n = len(greedy(words, limit, length))
        best = limit
        spans = sorted({length(" ".join(words[i:j])) for i in range(len(words)) for j in range(i + 1, len(words) + 1)})
        for lim in spans:
            if lim <= limit and len(greedy(words, lim, length)) <= n:
                best = lim
                break
        out += [" ".join(line) for line in greedy(words, best, length)]
    return "\n".join(out)


def _refit(t, limit: float, renderer) -> bool:
    """Wrap the text ``t`` where it is longer than ``limit`` pixels along its reading direction; True if changed."""
    if not (t.get_visible() and t.get_text().strip()):
        return False
    bb = t.get_window_extent(renderer)
    if (bb.height if 45 < (t.get_rotation() % 180) < 135 else bb.width) <= limit + 0.5:
        return False
    new = _wrap(t, limit, renderer)
    if new == t.get_text():
        return False
    t.set_text(new)
    return True


def _overlapping(bboxes, pad: float) -> bool:
    bboxes = sorted(bboxes, key=lambda b: b.x0)
    return any(a.x1 + pad > b.x0 and a.y1 + pad > b.y0 and b.y1 + pad > a.y0 and a.x0 < b.x1 + pad
               for i, a in enumerate(bboxes) for b in bboxes[i + 1:])


def _labels_overlap(labels, renderer, pad: float, horizontal: bool) -> bool:
    """Whether two of the tick labels ``labels`` of one axis overlap (or come within ``pad`` pixels): their boxes
    where they are level or upright; where they are tilted (parallel boxes of the same tilt), whether the gap between
    neighbours across their slant, ``spacing * sin(tilt)``, is less than their height."""
    tilts = {round(lb.get_rotation() % 180, 6) for lb in labels}
    if tilts <= {0.0, 90.0}:
        return _overlapping([lb.get_window_extent(renderer) for lb in labels], pad)
    sin = min(abs(math.sin(math.radians(t))) for t in tilts)
    i = 0 if horizontal else 1
    centres = sorted((lb.get_window_extent(renderer).get_points().mean(0)[i], lb) for lb in labels)
    for (a, la), (b, lb) in zip(centres, centres[1:]):
        heights = []
        for t in (la, lb):
            rot = t.get_rotation()
            t.set_rotation(0)
            heights.append(t.get_window_extent(renderer).height)
            t.set_rotation(rot)
        if (b - a) * sin < max(heights) + pad:
            return True
    return False


def _fit_ticks(ax, renderer, pad: float) -> bool:
    """Tick labels that overlap. On an x axis at ticks the caller placed (categories): wrapped to the tick spacing
    where that makes them fit, else tilted 45 degrees, then set upright, then upright on one line. At ticks a locator
    placed: minor labels dropped, then fewer major ticks. True if anything changed."""
    changed = False
    for axis, horizontal in ((ax.xaxis, True), (ax.yaxis, False)):
        for minor in (True, False):
            locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
            ticks = axis.get_minor_ticks(len(locs)) if minor else axis.get_major_ticks(len(locs))
            lo, hi = sorted(axis.get_view_interval())
            span = (hi - lo) * 1e-9
            labels = [tk.label1 for tk, loc in zip(ticks, locs) if lo - span <= loc <= hi + span
                      and tk.get_visible() and tk.label1.get_visible() and tk.label1.get_text().strip()]
            if len(labels) < 2 or not _labels_overlap(labels, renderer, pad, horizontal):
                continue
            if minor:
                axis.set_minor_formatter(NullFormatter())
                changed = True
                continue
            if isinstance(axis.get_major_locator(), FixedLocator):     # ticks and texts the caller chose
                if not horizontal:
                    continue                      # rows: the figure's height is the caller's to choose
                pos = sorted(ax.transData.transform([(x, 0) for x in axis.get_ticklocs()])[:, 0])
                spacing = min(b - a for a, b in zip(pos, pos[1:])) if len(pos) > 1 else ax.bbox.width
                every = [tk.label1 for tk in ticks]
                old = [lb.get_text() for lb in every]
                rot = labels[0].get_rotation() % 180
                limit = spacing - 2 * pad
                wrapped = [_wrap(lb, limit, renderer) for lb in every] if rot == 0 else old
                fits = all(_length(lb, line, renderer) <= limit for lb, text in zip(every, wrapped)
                           for line in text.split("\n")) and max(t.count("\n") for t in wrapped) < 4
                if rot == 0 and fits and wrapped != old:
                    axis.set_ticklabels(wrapped)                       # level, on a few lines each
                elif rot < 45:
                    axis.set_ticklabels(old, rotation=45, ha="right", rotation_mode="anchor")
                elif rot < 90:
                    axis.set_ticklabels(old, rotation=90, ha="center", rotation_mode="default")
                elif any("\n" in t for t in old):
                    axis.set_ticklabels([" ".join(t.split()) for t in old])    # upright, on one line each
                else:
                    continue
                changed = True
            else:
                n = max(2, len(labels) // 2)
                if axis.get_scale() == "log":
                    axis.set_major_locator(LogLocator(numticks=n))
                else:
                    axis.set_major_locator(MaxNLocator(nbins=max(1, n - 1)))
                changed = True
    return changed


def _fit_value_labels(ax, renderer, pad: float) -> bool:
    """Place the value labels of ``ax`` left to right, each at the lowest height at or above its own point where it
    overlaps none placed before it; then extend the y range so that every label lies inside the axes. True if
    anything changed."""
    labels = [t for t in ax.texts if isinstance(t, Annotation) and t.get_gid() == VALUE_LABEL and t.get_visible()]
    if not labels:
        return False
    labels.sort(key=lambda t: (t.xy[0], t.xy[1]))
    before = [t.xyann for t in labels]
    to_pt = 72.0 / ax.figure.dpi
    placed = []
    for lab in labels:
        lab.xyann = getattr(lab, "natural_xyann", lab.xyann)
        bb = lab.get_window_extent(renderer)
        beside = [o for o in placed if bb.x1 + pad > o.x0 and o.x1 + pad > bb.x0]
        for y in sorted({bb.y0} | {o.y1 + pad for o in beside if o.y1 + pad > bb.y0}):
            if not any(y + bb.height + pad > o.y0 and o.y1 + pad > y for o in beside):
                break
        dx, dy = lab.xyann
        lab.xyann = (dx, dy + (y - bb.y0) * to_pt)
        placed.append(lab.get_window_extent(renderer))
    changed = any(abs(a[1] - b[1]) > 0.05 for a, b in zip(before, (t.xyann for t in labels)))
    y0, y1 = ax.get_ylim()
    box = ax.get_window_extent(renderer)
    need = y1
    for lab, bb in zip(labels, placed):
        if bb.y1 + pad > box.y1:
            base = ax.transData.transform((lab.xy[0], lab.xy[1]))[1] - box.y0      # the labelled point, px
            room = box.height - pad - (bb.y1 - box.y0 - base)                         # what the point may reach
            frac = base / box.height
            need = max(need, y0 + (y1 - y0) * frac * box.height / room if room > 1 else y0 + 2 * (y1 - y0))
    top = max(lab.xy[1] for lab in labels)
    need = min(need, y0 + 4 * (top - y0)) if top > y0 else need     # labels taller than the axes: at most this
    if need > y1 + 1e-6 * (y1 - y0):
        ax.set_ylim(y0, need)
        changed = True
    return changed


def _footprint(fig, ax, renderer):
    """The box of ``ax`` with its y tick labels and y labels, and those of axes drawn in the same place (twins): the
    width an x label may take without reaching a neighbour."""
    boxes = [ax.get_window_extent(renderer)]
    for other in fig.axes:
        if other is ax or (other.get_visible() and np.allclose(other.get_position().bounds, ax.get_position().bounds)):
            texts = [other.yaxis.label] + [t for t in other.get_yticklabels() if t.get_visible()]
            boxes += [t.get_window_extent(renderer) for t in texts if t.get_text().strip()]
    return Bbox.union(boxes)


def _fit_title(fig, ax, renderer, pad: float) -> bool:
    """Wrap the title of ``ax`` to the width of its axes where it runs into another axes (a colour bar, a
    neighbour) or another title, or out of the figure; True if changed."""
    t = ax.title
    if not (t.get_visible() and t.get_text().strip()):
        return False
    tb = t.get_window_extent(renderer).padded(pad)
    box = ax.get_window_extent(renderer)
    others = [o.get_window_extent(renderer) for o in fig.axes if o is not ax and o.get_visible()
              and not np.allclose(o.get_position().bounds, ax.get_position().bounds)]
    others += [o.title.get_window_extent(renderer) for o in fig.axes if o is not ax and o.get_visible()
               and o.title.get_visible() and o.title.get_text().strip()]
    hit = any(tb.x0 < b.x1 and b.x0 < tb.x1 and tb.y0 < b.y1 and b.y0 < tb.y1 for b in others)
    outside = tb.x0 < fig.bbox.x0 or tb.x1 > fig.bbox.x1
    return (hit or outside) and _refit(t, box.width - 2 * pad, renderer)


def _renderer(fig):
    """``fig`` laid out and drawn (nothing rendered); the renderer it was drawn with."""
    fig.draw_without_rendering()
    canvas = fig.canvas
    return canvas.get_renderer() if hasattr(canvas, "get_renderer") else fig._get_renderer()


def _fit_text(fig, rounds: int = 5):
    """Lay ``fig`` out and fit its text to the room the layout gives it (see the module's docstring); repeated until
    nothing changes, since each change moves the layout."""
    for _ in range(rounds):
        renderer = _renderer(fig)
        pad = _PAD * fig.dpi / 72
        changed = False
        for ax in fig.axes:
            if not ax.get_visible() or not ax.axison:
                continue
            box = ax.get_window_extent(renderer)
            changed |= _refit(ax.yaxis.label, box.height, renderer)
            changed |= _refit(ax.xaxis.label, _footprint(fig, ax, renderer).width, renderer)
            changed |= _fit_title(fig, ax, renderer, pad)
            changed |= _fit_ticks(ax, renderer, pad)
            changed |= _fit_value_labels(ax, renderer, pad)
        for ax in fig.axes:                     # images (axis off): their titles still fit
            if ax.get_visible() and not ax.axison:
                changed |= _fit_title(fig, ax, renderer, pad)
        if fig._suptitle is not None:
            changed |= _refit(fig._suptitle, fig.bbox.width, renderer)
        for leg in fig.legends:
            n = getattr(leg, "_ncols", 1)
            if n > 1 and leg.get_window_extent(renderer).width > fig.bbox.width:
                leg.set_ncols(math.ceil(n / 2) if n > 3 else n - 1)
                changed = True
        if not changed:
            return fig
    fig.draw_without_rendering()
    return fig
