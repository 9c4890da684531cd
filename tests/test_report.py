import json
import math
import os
import stat

import pytest

from hwlib.io import atomic_write_text
from hwlib.study.report import macro_name, write_results, write_table


def test_macro_names_are_letters_only():
    assert macro_name("Det", ["ap_standard", "circle"]) == "DetApStandardCircle"
    assert macro_name("Kp", ["pck", "heatmap_dark", "0.05"]) == "KpPckHeatmapDarkZeroZeroFive"


def test_write_results_json_and_tex(tmp_path):
    write_results(tmp_path, "x", {"profile": "smoke", "map": 0.91234, "n": 1200, "nested": {"a b": 1.5},
                                  "arr": [0.1, 0.2], "nan": float("nan")}, prefix="T")
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["map"] == 0.91234 and data["profile"] == "smoke"
    tex = (tmp_path / "x.tex").read_text()
    assert r"\newcommand{\TMap}{0.912}" in tex
    assert r"\newcommand{\TN}{1{,}200}" in tex
    assert r"\newcommand{\TNestedAB}{1.500}" in tex
    assert r"\newcommand{\TArrOne}{0.200}" in tex
    assert r"\newcommand{\TNan}{n/a}" in tex
    assert r"\newcommand{\TProfile}{smoke}" in tex


def test_results_must_record_profile(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        write_results(tmp_path, "x", {"map": 1.0}, prefix="T")


def test_table(tmp_path):
    write_table(tmp_path, "t", ["a", "b"], [["1", "2"], "midrule", ["3", "4"]])
    t = (tmp_path / "t.tex").read_text()
    assert "\\toprule" in t and "1 & 2 \\\\" in t and "\\midrule" in t


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_folder_gives_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(OSError, match="not writable"):
        atomic_write_text(ro / "f.json", "{}")


def test_unwritable_target_gives_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write"):
        atomic_write_text(blocker / "sub" / "f.json", "{}")


def test_pdf_macros_follow_the_json(tmp_path):
    """Changing a number in a results JSON changes the macro the PDF prints (refreshed before latexmk)."""
    from hwlib.study.report import refresh_macros

    write_results(tmp_path, "02_detector_training", {"profile": "smoke", "map_standard": 0.5}, prefix="Det")
    data = json.loads((tmp_path / "02_detector_training.json").read_text())
    data["map_standard"] = 0.75
    (tmp_path / "02_detector_training.json").write_text(json.dumps(data))
    assert refresh_macros(tmp_path) == ["02_detector_training"]
    assert r"\newcommand{\DetMapStandard}{0.750}" in (tmp_path / "02_detector_training.tex").read_text()
    write_results(tmp_path, "pipeline", {"profile": "smoke", "total_seconds": 12.3456}, prefix="Pipe", digits=1)
    (tmp_path / "pipeline.json").write_text(json.dumps({"profile": "smoke", "total_seconds": 99.04}))
    refresh_macros(tmp_path)   # prefix and digits come from the twin's header
    assert r"\newcommand{\PipeTotalSeconds}{99.0}" in (tmp_path / "pipeline.tex").read_text()


@pytest.mark.parametrize("suffix", ["pdf", "png"])
def test_the_same_figure_saves_to_the_same_bytes(tmp_path, suffix):
    import time

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hwlib.study.report import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, tmp_path / f"a.{suffix}")
    time.sleep(1.1)                      # a creation date would now differ by a second
    save_figure(fig, tmp_path / f"b.{suffix}")
    plt.close(fig)
    assert (tmp_path / f"a.{suffix}").read_bytes() == (tmp_path / f"b.{suffix}").read_bytes()
