"""One style for every figure: each is drawn at the size it is printed at (``FULL_WIDTH`` = ``\\textwidth``,
``HALF_WIDTH`` = ``0.49\\textwidth``), with no text below 7 pt at that size (``STYLE``), Okabe-Ito colours for every
categorical colour, and legends outside the data.
"""

from __future__ import annotations

import functools

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() in ("", "agg") else None
import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402

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


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig
