"""hwlib.study.tables: hand-worked rows of the tables that the assignment analyses feed."""

from hwlib.study.results import Record
from hwlib.study.tables import head_size_table, positive_scores_table, positives_table


def test_positives_table_hand_worked():
    m = [[1.0, 2.0, 0.0], [0.0, 3.5, 1.0], [0.0, 0.25, 4.0]]      # rows heads S1..S3, columns small/medium/large
    header, rows = positives_table({"baseline": m}, ("small", "medium", "large"))
    assert header[-2:] == ["S2 from medium", "S3 from medium"]
    assert rows == [["baseline", "3.0", "4.5", "4.2", "3.5", "0.2"]]


def test_positive_scores_table_hand_worked():
    d = {"all": {"positives": 60, "objects": 3, "iou": 0.8123, "prior_iou": 0.8, "class_prob": 0.996,
                 "objectness": 0.00054, "object_score": 0.0005, "object_rank": 865}, "image_top_score": 0.009}
    empty = {"all": {"positives": 0, "objects": 0, "iou": None, "prior_iou": None, "class_prob": None,
                     "objectness": None, "object_score": None, "object_rank": None}, "image_top_score": None}
    header, rows = positive_scores_table({"a": d, "b": empty})
    assert len(header) == len(rows[0]) == 8
    assert rows[0] == ["a", "20.0", "0.81 (0.80)", "1.00", "0.00054", "0.0005", "865", "0.009"]
    assert rows[1] == ["b", "0.0", "-- (--)", "--", "--", "--", "--", "--"]


def test_head_size_table_hand_worked():
    """Shares 0.2 / 0.4 / 0.6 over three seeds: mean 0.40, t-interval 0.40 +- 4.303 * 0.2 / sqrt(3) = +-0.50, cut at
    [0, 1] (a share); recall the same; one seed prints its mean alone."""
    def seed(x):
        share = [[x, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        return {"tp_share_seed": share, "recall_seed": [x, 1.0, 1.0], "recall_standard": [x, 1.0, 1.0]}
    rec = Record([0, 1, 2], [seed(0.2), seed(0.4), seed(0.6)], [1.0] * 3, [8] * 3).to_json()
    header, rows = head_size_table(rec, [10, 20, 30], [[1, 2, 3], [4, 5, 6], [7, 8, 9]], ("small", "medium", "large"))
    assert header == ["head", "ours small (3 seeds)", "ours medium (3 seeds)", "ours large (3 seeds)",
                      "original small (count)", "original medium (count)", "original large (count)"]
    assert rows[0] == ["S1", "0.40 [0.00, 0.90]", "0.00 [0.00, 0.00]", "0.00 [0.00, 0.00]", "1", "2", "3"]
    assert rows[3] == "midrule"
    assert rows[4] == ["recall (conf >= 0.5)", "0.40 [0.00, 0.90]", "1.00 [1.00, 1.00]", "1.00 [1.00, 1.00]", "", "", ""]
    assert rows[6] == ["GT objects", "10", "20", "30", "", "", ""]
    one = Record([0], [seed(0.2)], [1.0], [8]).to_json()
    assert head_size_table(one, [1, 1, 1], [[0] * 3] * 3, "sml")[1][0][1] == "0.20"
