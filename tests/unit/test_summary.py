"""The README's results block (lffood.report.summary): cells, paired differences against the CE
control, verdicts, provenance and the block replacement."""

import numpy as np
import pandas as pd
import pytest

from lffood.report import summary
from lffood.runtime import provenance

SETS = ["bg", "far"]
# AUROC (percent) per (variant, scorer, seed, ood set)
AUROC = {("ce_control", "react"): {0: (90, 80), 1: (92, 82)}, ("lff", "react"): {0: (95, 81), 1: (96, 81)},
         ("ce_control", "msp"): {0: (85, 70), 1: (86, 72)}, ("ssod", "ssod"): {0: (88, 90), 1: (86, 92)},
         ("ssod", "msp"): {0: (84, 70), 1: (85, 70)}}


def _tidy():
    rows = []
    for (v, s), seeds in AUROC.items():
        for seed, vals in seeds.items():
            for o, a in zip(SETS, vals):
                rows.append({"benchmark": "b", "seed": seed, "variant": v, "scorer": s, "ood_set": o, "auroc": a,
                             "fpr95": 100 - a, "aupr_in": 50.0, "aupr_out": 50.0, "id_acc": 90.0 + seed})
    return pd.DataFrame(rows)


METHODS = {"ce_control": ("CE control", "react"), "lff": ("LFF", "react"), "ssod": ("SSOD", "ssod")}


def test_methods_table_cells():
    md = summary.methods_table(_tidy(), METHODS, SETS)
    lff = next(line for line in md.splitlines() if line.startswith("| LFF |"))
    # bg: 95, 96 -> 95.5 ± 0.7; far 81, 81; average per seed (88, 88.5) -> 88.2 ± 0.4
    assert "| 95.5 ± 0.7 | 81.0 ± 0.0 | 88.2 ± 0.4 |" in lff
    assert lff.endswith("| 11.8 ± 0.4 | 90.5 ± 0.7 |")  # FPR95 = 100 - AUROC here; ID acc 90, 91


def test_paired_differences_and_verdicts():
    d = summary.paired_differences(_tidy(), "lff", "react", "ce_control", "react", SETS)
    np.testing.assert_allclose(d["bg"], [5, 4])
    np.testing.assert_allclose(d["far"], [1, -1])
    np.testing.assert_allclose(d["average"], [3, 1.5])
    assert summary.verdict(d["bg"]) == "win" and summary.verdict(d["far"]) == "tie"
    assert summary.verdict(np.array([-3.0, -2.0])) == "loss" and summary.verdict(np.array([])) == "–"
    assert summary.verdict(np.array([0.5])) == "win"  # one seed: no spread


def test_control_table_falls_back_to_the_controls_scorer():
    md = summary.control_table(_tidy(), METHODS, "ce_control", SETS)
    assert "| LFF (ReAct) | +4.5 ± 0.7 (win) | +0.0 ± 1.4 (tie) |" in md
    # SSOD's score needs the OOD head: compared with the control's own scorer (ReAct); 88-90, 86-92 vs 90/80, 92/82
    ssod = next(line for line in md.splitlines() if line.startswith("| SSOD"))
    assert ssod.startswith("| SSOD (SSOD) vs control (ReAct) | -4.0 ± 2.8 (loss) | +10.0 ± 0.0 (win) |")
    assert "CE control" not in md.split("\n", 2)[2]  # the control is not compared with itself


def test_block_and_replacement():
    block = summary.results_block(_tidy(), bench="b", methods=METHODS, control="ce_control", ood_sets=SETS,
                                  origin="commit abc; a CPU", command="lffood results")
    assert block.startswith(summary.START) and block.endswith(summary.END)
    assert "commit abc; a CPU" in block and "2 seeds" in block
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
