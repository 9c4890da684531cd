"""Every figure of the report. Each function draws one figure, saves it atomically and returns it.

One style for every figure: each is drawn at the size it is printed at (``FULL_WIDTH`` = ``\\textwidth``,
``HALF_WIDTH`` = ``0.49\\textwidth``), with no text below 7 pt at that size (``STYLE``), Okabe-Ito colours for every
categorical colour, and legends outside the data.

``detection``: Part 1; ``keypoints``: Part 2; ``records``: result records; ``style``: the shared style.
"""

from hwlib.study.plots.detection import (anchor_coverage, ap_by_size, assignment_counts, box_sizes, confusion,
                                         detection_samples, objectness_maps, pr_curves, receptive_fields,
                                         size_histogram)  # noqa: F401
from hwlib.study.plots.keypoints import (failure_rates, keypoint_density, keypoint_overlays, keypoint_samples,
                                         pck_curves)  # noqa: F401
from hwlib.study.plots.records import (ablation_panels, arm_bars, metric_vs_images, run_curves, time_to_accuracy,
                                       training_curves)  # noqa: F401
from hwlib.study.plots.style import (CLASS_COLOURS, FAILURE_COLOURS, FULL_WIDTH, GT_COLOUR, HALF_WIDTH, HEAD_COLOURS,
                                     KEYPOINT_COLOURS, METHOD_COLOURS, MIN_FONT, OKABE_ITO, PALETTE, PRED_COLOUR, STYLE)  # noqa: F401
