"""The sensitivity table (paper Fig. 6): sweep points and the CE-control reference, averaged over
the OOD sets per seed, against hand-computed values."""

import pandas as pd
import pytest

from lffood.report.sensitivity import sensitivity_figure, sensitivity_table


def _tidy():
    rows = []
    # (variant, scorer, seed) -> AUROC on the two OOD sets a and b
    cells = {("ce_control", "react", 0): (90, 94), ("ce_control", "react", 1): (92, 96),
             ("lff_l1", "react", 0): (96, 98), ("lff_l1", "react", 1): (94, 96),
             ("ssod_g9", "ssod", 0): (80, 90), ("ssod_g9", "ssod", 1): (84, 94)}
    for (variant, scorer, seed), (a, b) in cells.items():
        for ood, auroc in (("a", a), ("b", b)):
            rows.append({"variant": variant, "scorer": scorer, "seed": seed, "ood_set": ood, "auroc": auroc,
                         "fpr95": 100 - auroc})
    return pd.DataFrame(rows)


POINTS = [{"param": "lambda", "value": 1.0, "variant": "lff_l1", "base": "lff", "scorer": "react"},
          {"param": "gamma", "value": 0.9, "variant": "ssod_g9", "base": "ssod", "scorer": "ssod"}]


def test_points_and_reference_are_per_seed_averages_over_ood_sets():
    df = sensitivity_table(_tidy(), POINTS[:1], "ce_control")
    pts = df[df["kind"] == "point"].set_index("seed")["auroc"]
    ref = df[df["kind"] == "reference"].set_index("seed")["auroc"]
    assert pts.to_dict() == {0: 97.0, 1: 95.0}  # (96 + 98) / 2, (94 + 96) / 2
    assert ref.to_dict() == {0: 92.0, 1: 94.0}
    assert set(df["scorer"]) == {"react"}


def test_reference_falls_back_to_the_controls_own_scorer():
    """SSOD's score needs SSOD's OOD head: the control has no 'ssod' metrics, so its reference line
    uses the control's own scorer (react), and the table says so."""
    df = sensitivity_table(_tidy(), POINTS, "ce_control", reference_scorer="react")
    gamma = df[df["param"] == "gamma"]
    assert gamma[gamma["kind"] == "point"].set_index("seed")["auroc"].to_dict() == {0: 85.0, 1: 89.0}
    ref = gamma[gamma["kind"] == "reference"]
    assert set(ref["scorer"]) == {"react"} and ref.set_index("seed")["auroc"].to_dict() == {0: 92.0, 1: 94.0}


def test_missing_reference_names_both_scorers():
    with pytest.raises(ValueError, match="'ce_control' with scorer 'ssod' or 'msp'.*ssod.gamma"):
        sensitivity_table(_tidy(), POINTS, "ce_control", reference_scorer="msp")
    with pytest.raises(ValueError, match="'ce_control' with scorer 'ssod' for the sweep of ssod.gamma"):
        sensitivity_table(_tidy(), POINTS, "ce_control")


def test_figure_legend_names_the_reference_scorer(tmp_path, monkeypatch):
    import matplotlib.axes

    labels = []
    original = matplotlib.axes.Axes.axhline

    def spy(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", spy)
    df = sensitivity_table(_tidy(), POINTS, "ce_control", reference_scorer="react")
    sensitivity_figure(df, png=str(tmp_path / "s.png"), pdf=str(tmp_path / "s.pdf"), title="t",
                       labels={"ce_control": "CE control", "lff": "LFF", "ssod": "SSOD"})
    assert labels == ["CE control", "CE control (react)"]
    assert (tmp_path / "s.pdf").read_bytes()[:5] == b"%PDF-"
