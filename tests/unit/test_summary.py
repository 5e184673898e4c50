"""The README's results block (lffood.report.summary): cells with intervals over seeds and test
images, the comparison with the CE control read from its table, provenance and the block replacement."""

import numpy as np
import pandas as pd
import pytest

from lffood import stats
from lffood.errors import IntegrityError
from lffood.report import summary
from lffood.runtime import provenance

SETS = ["bg", "far"]
# AUROC (percent) per (variant, scorer, seed, ood set)
AUROC = {("ce_control", "react"): {0: (90, 80), 1: (92, 82)}, ("lff", "react"): {0: (95, 81), 1: (96, 81)},
         ("ce_control", "msp"): {0: (85, 70), 1: (86, 72)}, ("ssod", "ssod"): {0: (88, 90), 1: (86, 92)},
         ("ssod", "msp"): {0: (84, 70), 1: (85, 70)}}
SE = 0.5  # every metric's test-set standard error (percent)


def _tidy():
    rows = []
    for (v, s), seeds in AUROC.items():
        for seed, vals in seeds.items():
            for o, a in zip(SETS, vals):
                rows.append({"benchmark": "b", "seed": seed, "variant": v, "scorer": s, "ood_set": o, "auroc": a,
                             "fpr95": 100 - a, "aupr_in": 50.0, "aupr_out": 50.0, "id_acc": 90.0 + seed,
                             **{f"{m}_se": SE for m in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_acc")}})
    return pd.DataFrame(rows)


METHODS = {"ce_control": ("CE control", "react"), "lff": ("LFF", "react"), "ssod": ("SSOD", "ssod")}


def _comparison(n_seeds=2):
    rows = []
    for method, label, scorer, ref in (("lff", "LFF", "react", "react"), ("ssod", "SSOD", "ssod", "react")):
        for o, (d, lo, hi, v) in zip([*SETS, "average"], [(4.5, 1.2, 7.8, "win"), (0.0, -1.5, 1.5, "tie"),
                                                          (-2.25, -3.0, -1.5, "loss")]):
            for m in ("auroc", "fpr95"):
                rows.append({"method": method, "label": label, "scorer": scorer, "control_scorer": ref, "metric": m,
                             "ood_set": o, "n_seeds": n_seeds, "diff": d, "ci_low": lo, "ci_high": hi, "df": 3.0,
                             "se_seeds": 0.1, "se_test": 0.2, "verdict": v, "seeds_in_interval": n_seeds > 1,
                             "level": 0.95, "bootstrap": 1000})
    return pd.DataFrame(rows)


def test_methods_table_cells_are_intervals_over_seeds_and_test_images():
    md = summary.methods_table(_tidy(), METHODS, SETS)
    lff = next(line for line in md.splitlines() if line.startswith("| LFF |"))
    # bg: 95, 96 -> mean 95.5; V = s^2/n + mean(se^2) = 0.5/2 + 0.25 = 0.5; df = 0.5^2 / (0.25^2 / 1) = 4;
    # t_{0.975, 4} = 2.776 -> half-width 2.776 * sqrt(0.5) = 1.96
    assert lff.startswith("| LFF | ReAct | 95.5 ± 2.0 |")
    # far: 81, 81 (no seed spread): V = 0.25, df = inf, 1.96 * 0.5 = 0.98
    assert "| 81.0 ± 1.0 |" in lff
    iv = stats.cell([95, 96], [SE, SE])
    assert iv.half_width == pytest.approx(2.7764451 * np.sqrt(0.5), rel=1e-6)


def test_methods_table_refuses_metrics_without_standard_errors():
    with pytest.raises(IntegrityError, match="auroc_se"):
        summary.methods_table(_tidy().drop(columns="auroc_se"), METHODS, SETS)


def test_control_table_reads_the_comparison():
    md = summary.control_table(_comparison(), SETS)
    assert "| LFF (ReAct) | +4.5 [+1.2, +7.8] win | +0.0 [−1.5, +1.5] tie | −2.2 [−3.0, −1.5] loss |" in md
    # SSOD's score needs the OOD head: compared with the control's own scorer (ReAct)
    assert next(line for line in md.splitlines() if line.startswith("| SSOD")).startswith(
        "| SSOD (SSOD) vs control (ReAct) | +4.5 [+1.2, +7.8] win")
    assert "CE control" not in md.split("\n", 2)[2]  # the control is not compared with itself


def test_check_comparison_refuses_another_configuration():
    summary.check_comparison(_comparison(), METHODS, "ce_control", [0, 1], "x.csv")
    with pytest.raises(IntegrityError, match="over \\[1\\] seed"):
        summary.check_comparison(_comparison(1), METHODS, "ce_control", [0, 1], "x.csv")
    with pytest.raises(IntegrityError, match="snakemake x.csv"):
        summary.check_comparison(_comparison(), {**METHODS, "mode": ("MODE", "react")}, "ce_control", [0, 1], "x.csv")


def test_block_and_replacement():
    block = summary.results_block(_tidy(), _comparison(), bench="b", methods=METHODS, ood_sets=SETS,
                                  origin="commit abc; a CPU", command="lffood results")
    assert block.startswith(summary.START) and block.endswith(summary.END)
    assert "commit abc; a CPU" in block and "2 seeds" in block and "tables/b_vs_control.csv" in block
    assert "win / loss only when the interval excludes 0" in block and "over 2 seeds and the test images" in block
    one = summary.results_block(_tidy()[_tidy()["seed"] == 0], _comparison(1), bench="b", methods=METHODS,
                                ood_sets=SETS, origin="o", command="c")
    assert "test images only" in one and "spread over seeds is unknown" in one
    text = f"intro\n{summary.START}\nold numbers\n{summary.END}\noutro\n"
    out = summary.replace_block(text, block, "README.md")
    assert "old numbers" not in out and out.startswith("intro\n") and out.endswith("\noutro\n")
    with pytest.raises(ValueError, match="README.md has no"):
        summary.replace_block("no markers", block, "README.md")


def test_provenance_names_commit_and_machine(tmp_path):
    text = provenance(tmp_path)  # not a git checkout
    assert text.startswith("commit unknown;") and "CPU cores" in text
    from conftest import REPO

    assert not provenance(REPO).startswith("commit unknown")


def test_figure_copies_are_the_images_the_page_shows(tmp_path):
    from lffood.report.summary import figure_copies

    text = ("![bars](docs/img/embedded_auroc_bars.png)\n![other](img/embedded_tsne.png)\n"
            "[a link, not an image](docs/img/embedded_auroc_bars.png)\n![again](docs/img/embedded_auroc_bars.png)\n")
    page = tmp_path / "README.md"
    assert figure_copies(text, page, "embedded_auroc_bars.png") == [tmp_path / "docs/img/embedded_auroc_bars.png"]
    assert figure_copies(text, tmp_path / "docs/methods.md", "embedded_baselines_auroc_bars.png") == []
