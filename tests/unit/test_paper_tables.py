"""The paper's Tables I-IV: which model and scorer fill each row, per-OOD and average layouts,
and hand-computed cells."""

import pandas as pd
import pytest

from lffood.report.paper_tables import POSTHOC, TABLE4, Method, build, rows, write_paper_table

# two benchmarks, two seeds; AUROC / FPR95 fractions per (bench, variant, scorer, seed, ood set)
SETS = {"c10": ["svhn", "isun"], "c100": ["svhn", "isun", "textures"]}


def _auroc(bench, variant, scorer, seed, ood):
    base = {"ce": 0.80, "ce_control": 0.84, "lff": 0.90}[variant] + (0.02 if scorer == "react" else 0.0)
    return base + 0.01 * seed + (0.04 if ood == "svhn" else 0.0) - (0.1 if bench == "c100" else 0.0)


METHODS = {"ce": Method("CE", "react"), "ce_control": Method("CE control", "react"), "lff": Method("LFF", "react")}
ROLES = {"baseline": "ce", "control": "ce_control", "ours": "lff"}


def _fpr(bench, variant, scorer, seed, ood):
    return 1.0 - _auroc(bench, variant, scorer, seed, ood)


def _write(tmp_path, scorers=("msp", "energy", "react")):
    files = {}
    for b, sets in SETS.items():
        files[b] = []
        for v in ("ce", "ce_control", "lff"):
            for seed in (0, 1):
                recs = [{"benchmark": b, "seed": seed, "variant": v, "scorer": s, "ood_set": o,
                         "auroc": _auroc(b, v, s, seed, o), "fpr95": _fpr(b, v, s, seed, o), "aupr_in": 0.5,
                         "aupr_out": 0.5, "id_acc": 0.9} for s in scorers for o in sets]
                path = tmp_path / f"{b}_{v}_{seed}.csv"
                pd.DataFrame(recs).to_csv(path, index=False)
                files[b].append(str(path))
    return files


def test_row_definitions():
    t1 = rows("table1", METHODS, ROLES)
    assert [r.scorer for r in t1[:len(POSTHOC)]] == [s for _, s in POSTHOC]
    assert all(r.variant == "ce" for r in t1[:len(POSTHOC)])
    assert t1[-2:] == [("CE control (ReAct)", "ce_control", "react"), ("Ours (LFF + ReAct)", "lff", "react")]
    more = {**METHODS, "lff": Method("LFF", "energy"), "ssod": Method("SSOD", "ssod"), "mode": Method("MODE-F", "csd")}
    t3 = rows("table3", more, ROLES)
    assert t3[-3:] == [("Ours (LFF + Energy)", "lff", "energy"), ("SSOD (SSOD)", "ssod", "ssod"),
                       ("MODE-F (CSD)", "mode", "csd")]
    t4 = rows("table4", METHODS, ROLES)
    assert len(t4) == 3 * len(TABLE4)
    assert t4[:3] == [("MSP", "ce", "msp"), ("MSP (CE control)", "ce_control", "msp"), ("MSP+Ours", "lff", "msp")]
    with pytest.raises(KeyError, match="table9"):
        rows("table9", METHODS, ROLES)


def test_per_ood_table_cells_by_hand(tmp_path):
    files = _write(tmp_path)
    out = tmp_path / "t1.csv"
    df = write_paper_table("table1", files, SETS, csv=str(out), md=str(tmp_path / "t1.md"), methods=METHODS,
                           roles=ROLES)
    assert list(df["benchmark"].unique()) == ["c10", "c100"]
    # only the scorers that ran appear: msp, energy, react on CE, then control and Ours
    c10 = df[df["benchmark"] == "c10"].set_index("method")
    assert list(c10.index) == ["MSP", "Energy", "ReAct", "CE control (ReAct)", "Ours (LFF + ReAct)"]
    ours = c10.loc["Ours (LFF + ReAct)"]
    # LFF + react on c10, svhn: 0.92 + 0.04 + {0, 0.01} -> mean 96.5, std 0.7071
    assert ours["svhn/auroc_mean"] == pytest.approx(96.5)
    assert ours["svhn/auroc_std"] == pytest.approx(0.707, abs=1e-3)
    # average over OOD sets per seed: (0.96 + 0.92)/2 = 0.94 and 0.95 -> mean 94.5
    assert ours["average/auroc_mean"] == pytest.approx(94.5)
    assert c10.loc["MSP", "isun/fpr95_mean"] == pytest.approx(100 - 80.5)
    c100 = df[df["benchmark"] == "c100"].set_index("method")
    assert "textures/auroc_mean" in c100.columns
    assert c100.loc["Energy", "textures/auroc_mean"] == pytest.approx(70.5)
    assert pd.read_csv(out).shape == df.shape
    md = (tmp_path / "t1.md").read_text()
    assert "## c100" in md and "| Ours (LFF + ReAct) | " in md and "96.50 ± 0.71" in md


def test_average_table_and_missing_scorers(tmp_path):
    files = _write(tmp_path, scorers=("msp", "energy", "react"))
    df = write_paper_table("table4", files, SETS, csv=str(tmp_path / "t4.csv"), md=str(tmp_path / "t4.md"),
                           methods=METHODS, roles=ROLES)
    # ODIN and FeatureNorm did not run: their rows are left out; nine rows remain
    assert list(df["method"]) == ["MSP", "MSP (CE control)", "MSP+Ours", "Energy", "Energy (CE control)",
                                  "Energy+Ours", "ReAct", "ReAct (CE control)", "ReAct+Ours"]
    row = df.set_index("method").loc["Energy+Ours"]
    # lff energy c100: 0.80 + seed/100 + (0.04 on svhn), 3 sets -> per-seed avg 0.8133 / 0.8233
    assert row["c100/auroc_mean"] == pytest.approx(100 * (0.80 + 0.04 / 3 + 0.005), abs=1e-3)  # 3 decimals
    assert row["c10/fpr95_mean"] == pytest.approx(100 * (1 - (0.90 + 0.02 + 0.005)))
    md = (tmp_path / "t4.md").read_text()
    assert md.count("\n| ") == 1 + 9 and "c10 AUROC↑" in md


def test_average_table_leaves_empty_cells_for_a_benchmark_without_the_scorer(tmp_path):
    files = _write(tmp_path)
    tidy_c10 = pd.concat([pd.read_csv(f) for f in files["c10"]])
    tidy_c100 = pd.concat([pd.read_csv(f) for f in files["c100"]])
    tidy_c100 = tidy_c100[tidy_c100["scorer"] != "msp"]
    for t in (tidy_c10, tidy_c100):
        for m in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_acc"):
            t[m] = 100 * t[m]
    df = build("table2", {"c10": tidy_c10, "c100": tidy_c100}, SETS, METHODS, ROLES).set_index("method")
    assert pd.isna(df.loc["MSP", "c100/auroc_mean"]) and not pd.isna(df.loc["MSP", "c10/auroc_mean"])
