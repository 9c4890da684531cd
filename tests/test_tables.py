"""hwlib.study.tables: hand-worked rows of the tables that the assignment analyses feed."""

from hwlib.study.tables import positive_scores_table, positives_table


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
