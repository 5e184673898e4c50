"""Result tables: mean and std over seeds, the per-seed average over OOD sets, markdown formatting."""

import numpy as np
import pandas as pd
import pytest

from lffood import integrity
from lffood.report.tables import write_tables

SETS = ["cifar", "svhn"]
VARIANTS = ["lff", "ce", "ce_control"]  # deliberately not in table order
LABELS = {"ce": "CE", "ce_control": "CE control", "lff": "LFF"}  # config order and labels (variants.<v>.label)
SEEDS = [0, 1]
# AUROC and FPR95 (fractions) per variant, seed, set
AUROC = {
    "ce":         {0: {"cifar": 0.80, "svhn": 0.70}, 1: {"cifar": 0.84, "svhn": 0.66}},
    "ce_control": {0: {"cifar": 0.82, "svhn": 0.72}, 1: {"cifar": 0.86, "svhn": 0.74}},
    "lff":        {0: {"cifar": 0.90, "svhn": 0.80}, 1: {"cifar": 0.94, "svhn": 0.86}},
}
FPR = {
    "ce":         {0: {"cifar": 0.50, "svhn": 0.60}, 1: {"cifar": 0.40, "svhn": 0.70}},
    "ce_control": {0: {"cifar": 0.30, "svhn": 0.62}, 1: {"cifar": 0.36, "svhn": 0.58}},
    "lff":        {0: {"cifar": 0.36, "svhn": 0.40}, 1: {"cifar": 0.34, "svhn": 0.44}},
}
ACC = {"ce": {0: 0.91, 1: 0.93}, "ce_control": {0: 0.92, 1: 0.92}, "lff": {0: 0.90, 1: 0.94}}


@pytest.fixture
def tables(tmp_path):
    files = []
    for v in VARIANTS:
        for s in SEEDS:
            rows = [{"benchmark": "toy", "variant": v, "seed": s, "scorer": "energy", "ood_set": o,
                     "auroc": AUROC[v][s][o], "fpr95": FPR[v][s][o], "aupr_in": 0.5 + 0.01 * s,
                     "aupr_out": 0.6, "id_acc": ACC[v][s]} for o in SETS]
            path = tmp_path / f"metrics_{v}_{s}.csv"
            pd.DataFrame(rows).to_csv(path, index=False)
            integrity.seal(path)  # as the metrics rule writes them: with an integrity manifest
            files.append(str(path))
    out = {k: tmp_path / "out" / f"table.{k}" for k in ("csv", "md", "tex", "tidy")}
    table = write_tables(files, csv=str(out["csv"]), md=str(out["md"]), tex=str(out["tex"]), tidy=str(out["tidy"]),
                         title="Toy results", labels=LABELS)
    tex = out["tex"].read_text()
    # a booktabs table with one row per (scorer, model): 3 models of one scorer, header and rules
    assert tex.count(r"\\") == 1 + len(VARIANTS) and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"\textbf{" in tex and "$\\pm$" in tex and "CE control" in tex
    return table, pd.read_csv(out["csv"]), out["md"].read_text(), pd.read_csv(out["tidy"])


def _row(df, variant):
    return df.set_index("variant").loc[variant]


@pytest.mark.parametrize("variant", ["ce", "ce_control", "lff"])
@pytest.mark.parametrize("ood", SETS)
def test_per_set_mean_and_std(tables, variant, ood):
    _, csv, _, _ = tables
    r = _row(csv, variant)
    vals = np.array([100 * AUROC[variant][s][ood] for s in SEEDS])
    assert r[f"{ood}/auroc_mean"] == pytest.approx(vals.mean(), abs=1e-3)
    assert r[f"{ood}/auroc_std"] == pytest.approx(vals.std(ddof=1), abs=1e-3)
    fv = np.array([100 * FPR[variant][s][ood] for s in SEEDS])
    assert r[f"{ood}/fpr95_mean"] == pytest.approx(fv.mean(), abs=1e-3)
    assert r[f"{ood}/fpr95_std"] == pytest.approx(fv.std(ddof=1), abs=1e-3)


def test_hand_numbers(tables):
    _, csv, _, _ = tables
    ce = _row(csv, "ce")
    assert ce["cifar/auroc_mean"] == pytest.approx(82.0)
    assert ce["cifar/auroc_std"] == pytest.approx(2.828, abs=1e-3)  # |84 - 80| / sqrt(2)
    # the average is taken per seed first: both seeds average to 75 -> std 0
    # (pooling the four numbers would give a std of about 7.7)
    assert ce["average/auroc_mean"] == pytest.approx(75.0)
    assert ce["average/auroc_std"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("variant", ["ce", "ce_control", "lff"])
@pytest.mark.parametrize("metric,src", [("auroc", AUROC), ("fpr95", FPR)])
def test_average_is_mean_over_sets_per_seed(tables, variant, metric, src):
    _, csv, _, _ = tables
    r = _row(csv, variant)
    per_seed = np.array([np.mean([100 * src[variant][s][o] for o in SETS]) for s in SEEDS])
    assert r[f"average/{metric}_mean"] == pytest.approx(per_seed.mean(), abs=1e-3)
    assert r[f"average/{metric}_std"] == pytest.approx(per_seed.std(ddof=1), abs=1e-3)


def test_id_acc_and_seeds(tables):
    _, csv, _, _ = tables
    r = _row(csv, "lff")
    assert r["id_acc_mean"] == pytest.approx(92.0)
    assert r["id_acc_std"] == pytest.approx(np.std([90.0, 94.0], ddof=1), abs=1e-3)
    assert (csv["n_seeds"] == 2).all()


def test_table_order_and_returned_frame(tables):
    table, csv, _, tidy = tables
    assert list(csv["variant"]) == ["ce", "ce_control", "lff"]
    assert list(table["variant"]) == ["ce", "ce_control", "lff"]
    assert len(tidy) == 3 * 2 * 2
    assert tidy["auroc"].max() == pytest.approx(94.0)  # tidy data in percent


def _cell(mean, std):
    return f"{mean:.1f} ± {std:.1f}"


def test_markdown_cells_and_bold(tables):
    _, _, md, _ = tables
    assert md.startswith("# Toy results")
    lines = [ln for ln in md.splitlines() if ln.startswith("| energy")]
    assert len(lines) == 3
    by_model = {ln.split("|")[2].strip(): [c.strip() for c in ln.strip("|").split("|")] for ln in lines}
    assert set(by_model) == {"CE", "CE control", "LFF"}
    header = [c.strip() for c in md.splitlines()[4].strip("|").split("|")]
    assert header[:4] == ["Scorer", "Model", "cifar FPR95↓", "cifar AUROC↑"]
    assert header[-1] == "ID acc↑"
    col = {h: i for i, h in enumerate(header)}

    # CE cifar AUROC: 82.0 ± 2.8, not the best (LFF 92.0) -> plain
    assert by_model["CE"][col["cifar AUROC↑"]] == _cell(82.0, np.std([80, 84], ddof=1))
    # best AUROC within the scorer is bold (higher is better)
    assert by_model["LFF"][col["cifar AUROC↑"]] == "**" + _cell(92.0, np.std([90, 94], ddof=1)) + "**"
    assert by_model["LFF"][col["average AUROC↑"]] == "**" + _cell(87.5, np.std([85, 90], ddof=1)) + "**"
    # best FPR95 is the lowest: cifar -> CE control 33.0 (30, 36); average -> LFF 38.5 (38, 39)
    assert by_model["CE control"][col["cifar FPR95↓"]] == "**" + _cell(33.0, np.std([30, 36], ddof=1)) + "**"
    assert by_model["LFF"][col["cifar FPR95↓"]] == _cell(35.0, np.std([36, 34], ddof=1))
    assert by_model["LFF"][col["average FPR95↓"]] == "**" + _cell(38.5, np.std([38, 39], ddof=1)) + "**"
    assert by_model["CE"][col["average FPR95↓"]] == _cell(55.0, 0.0)
    assert by_model["CE"][col["ID acc↑"]] == _cell(92.0, np.std([91, 93], ddof=1))
    # exactly one bold cell per metric column
    for h in header[2:-1]:
        assert sum(by_model[m][col[h]].startswith("**") for m in by_model) == 1, h


# ----------------------------------------------------------------------------- Table IV shape
def _tidy(benchmarks=("toy",)):
    from lffood.report.tables import collect  # noqa: F401  (same units: percentages)

    rows = []
    for b_i, b in enumerate(benchmarks):
        for scorer, shift in (("odin", 0.0), ("knn", 0.05)):
            for v in VARIANTS:
                for s in SEEDS:
                    for o in SETS:
                        rows.append({"benchmark": b, "variant": v, "seed": s, "scorer": scorer, "ood_set": o,
                                     "auroc": 100 * (AUROC[v][s][o] - shift - 0.01 * b_i),
                                     "fpr95": 100 * FPR[v][s][o], "aupr_in": 50.0, "aupr_out": 60.0,
                                     "id_acc": 100 * ACC[v][s]})
    return pd.DataFrame(rows)


def test_scorer_table_rows_and_cells():
    from lffood.report.tables import scorer_table

    t = scorer_table(_tidy(), scorers=["odin", "knn"], variants=list(LABELS))
    assert list(zip(t["scorer"], t["variant"])) == [(s, v) for s in ("odin", "knn") for v in ("ce", "ce_control", "lff")]
    assert list(t["label"][:1]) == ["ODIN"] and "KNN" in set(t["label"])
    r = t.set_index(["scorer", "variant"]).loc[("knn", "lff")]
    vals = np.array([100 * AUROC["lff"][s]["svhn"] - 5 for s in SEEDS])
    assert r["svhn/auroc_mean"] == pytest.approx(vals.mean(), abs=1e-3)
    assert r["svhn/auroc_std"] == pytest.approx(vals.std(ddof=1), abs=1e-3)
    avg = np.array([np.mean([100 * AUROC["lff"][s][o] - 5 for o in SETS]) for s in SEEDS])
    assert r["average/auroc_mean"] == pytest.approx(avg.mean(), abs=1e-3)
    assert r["average/auroc_std"] == pytest.approx(avg.std(ddof=1), abs=1e-3)
    assert r["n_seeds"] == 2 and "cifar/fpr95_mean" in t.columns and "cifar/aupr_in_mean" not in t.columns


def test_scorer_table_across_benchmarks_for_table4():
    from lffood.report.tables import scorer_markdown, scorer_table

    t = scorer_table(_tidy(("c10", "c100")), by_benchmark=True, ood_order=["average"], variants=list(LABELS))
    assert {"c10/average/auroc_mean", "c100/average/fpr95_std", "c10/id_acc_mean"} <= set(t.columns)
    r = t.set_index(["scorer", "variant"]).loc[("odin", "ce")]
    assert r["c10/average/auroc_mean"] - r["c100/average/auroc_mean"] == pytest.approx(1.0)
    md = scorer_markdown(t, "Table IV", labels=LABELS)
    assert "c100/average AUROC↑" in md and md.count("| ODIN |") == 3
    with pytest.raises(ValueError, match="by_benchmark"):
        scorer_table(_tidy(("c10", "c100")))


def test_write_scorer_table(tmp_path):
    from lffood.report.tables import write_scorer_table

    files = []
    for (v, s), grp in _tidy().groupby(["variant", "seed"]):
        p = tmp_path / f"{v}_{s}.csv"
        g = grp.copy()
        for m in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_acc"):
            g[m] = g[m] / 100  # metric files hold fractions
        g.to_csv(p, index=False)
        integrity.seal(p)
        files.append(str(p))
    t = write_scorer_table(files, csv=str(tmp_path / "t.csv"), md=str(tmp_path / "t.md"), tex=str(tmp_path / "t.tex"),
                           title="T", labels=LABELS,
                           ood_order=["svhn", "cifar"], scorers=["knn", "odin"])
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back["scorer"].unique()) == ["knn", "odin"] and len(back) == len(t) == 6
    cols = [c for c in back.columns if c.endswith("/auroc_mean")]
    assert cols == ["svhn/auroc_mean", "cifar/auroc_mean", "average/auroc_mean"]
    md = (tmp_path / "t.md").read_text()
    assert "| KNN | LFF |" in md and "±" in md and "**" in md
    tex = (tmp_path / "t.tex").read_text()
    assert tex.count("\\midrule") == 2 and "KNN & LFF &" in tex  # header rule + one between the scorer blocks


def test_mean_std_cell_and_seed_std():
    from lffood.report.tables import mean_std, seed_std

    assert mean_std(94.56, 1.04) == "94.6 ± 1.0"
    assert mean_std(1.8, 1.2, signed=True) == "+1.8 ± 1.2" and mean_std(-0.04, 0.1, signed=True) == "-0.0 ± 0.1"
    assert mean_std(12.345, 0.5, digits=2, pm=r"{\scriptsize$\pm$") == r"12.35{\scriptsize$\pm$0.50"
    assert seed_std([1.0, 2.0, 3.0]) == 1.0 and seed_std([5.0]) == 0.0  # ddof=1; one seed: no spread
