"""Result tables: the primary table (each method with its own scorer), the secondary scorer table,
mean and spread over seeds, the per-seed average over OOD sets, the one cell format, the intervals
where the metrics carry standard errors, and the columns that carry no information."""

import re

import numpy as np
import pandas as pd
import pytest

from lffood import integrity
from lffood.report.tables import write_tables

SETS = ["cifar", "svhn"]
VARIANTS = ["lff", "ce", "ce_control"]  # deliberately not in table order
LABELS = {"ce": "CE", "ce_control": "CE control", "lff": "LFF"}  # config order and labels (variants.<v>.label)
OWN = {"ce": "energy", "ce_control": "energy", "lff": "energy"}  # variants.<v>.scorer
SEEDS = [0, 1]
# AUROC and FPR95 (fractions) per variant, seed, set, of the own scorer (energy); MSP's AUROC is 0.05 lower
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


def _files(tmp_path, ses=None, seeds=SEEDS):
    """Sealed per-(variant, seed) metrics files as the metrics rule writes them; ``ses``: (seed, set) ->
    the test-set standard error (fraction) of every metric, or None for files without them."""
    files = []
    for v in VARIANTS:
        for s in seeds:
            rows = [{"benchmark": "toy", "variant": v, "seed": s, "scorer": sc, "ood_set": o,
                     "auroc": AUROC[v][s][o] - shift, "fpr95": FPR[v][s][o], "aupr_in": 0.5 + 0.01 * s,
                     "aupr_out": 0.6, "id_acc": ACC[v][s]}
                    for sc, shift in (("msp", 0.05), ("energy", 0.0)) for o in SETS]
            if ses is not None:
                for r in rows:
                    r.update({f"{m}_se": ses[(s, r["ood_set"])] for m in ("auroc", "fpr95", "aupr_in", "aupr_out")})
            path = tmp_path / f"metrics_{v}_{s}.csv"
            pd.DataFrame(rows).to_csv(path, index=False)
            integrity.seal(path)
            files.append(str(path))
    return files


def _write(tmp_path, files, **kw):
    out = {k: tmp_path / "out" / f"table.{k}" for k in ("csv", "md", "tex", "tidy")}
    table = write_tables(files, csv=str(out["csv"]), md=str(out["md"]), tex=str(out["tex"]), tidy=str(out["tidy"]),
                         title="toy, primary table", labels=LABELS, **{"scorers": OWN, **kw})
    return table, pd.read_csv(out["csv"]), out["md"].read_text(), out["tex"].read_text(), pd.read_csv(out["tidy"])


@pytest.fixture
def tables(tmp_path):
    return _write(tmp_path, _files(tmp_path), ood_order=SETS)


def _row(df, variant):
    return df.set_index("variant").loc[variant]


def _md_table(md):
    """Header and body rows of the (one) pipe table of a Markdown file, cells stripped."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines() if line.startswith("|")]
    return rows[0], rows[2:]


@pytest.mark.parametrize("variant", ["ce", "ce_control", "lff"])
@pytest.mark.parametrize("ood", SETS)
def test_per_set_mean_and_std(tables, variant, ood):
    csv = tables[1]
    r = _row(csv, variant)
    vals = np.array([100 * AUROC[variant][s][ood] for s in SEEDS])
    assert r[f"{ood}/auroc_mean"] == pytest.approx(vals.mean(), abs=1e-9)  # the own scorer's, full precision
    assert r[f"{ood}/auroc_std"] == pytest.approx(vals.std(ddof=1), abs=1e-9)
    fv = np.array([100 * FPR[variant][s][ood] for s in SEEDS])
    assert r[f"{ood}/fpr95_mean"] == pytest.approx(fv.mean(), abs=1e-9)
    assert r[f"{ood}/fpr95_std"] == pytest.approx(fv.std(ddof=1), abs=1e-9)


def test_hand_numbers(tables):
    ce = _row(tables[1], "ce")
    assert ce["cifar/auroc_mean"] == pytest.approx(82.0)
    assert ce["cifar/auroc_std"] == pytest.approx(4 / np.sqrt(2))  # |84 - 80| / sqrt(2), not rounded
    # the average is taken per seed first: both seeds average to 75 -> std 0
    # (pooling the four numbers would give a std of about 7.7)
    assert ce["average/auroc_mean"] == pytest.approx(75.0)
    assert ce["average/auroc_std"] == pytest.approx(0.0, abs=1e-9)
    assert ce["average/aupr_in_mean"] == pytest.approx(50.5)
    assert ce["average/aupr_in_std"] == pytest.approx(np.sqrt(0.5))


@pytest.mark.parametrize("variant", ["ce", "ce_control", "lff"])
@pytest.mark.parametrize("metric,src", [("auroc", AUROC), ("fpr95", FPR)])
def test_average_is_mean_over_sets_per_seed(tables, variant, metric, src):
    r = _row(tables[1], variant)
    per_seed = np.array([np.mean([100 * src[variant][s][o] for o in SETS]) for s in SEEDS])
    assert r[f"average/{metric}_mean"] == pytest.approx(per_seed.mean(), abs=1e-9)
    assert r[f"average/{metric}_std"] == pytest.approx(per_seed.std(ddof=1), abs=1e-9)


def test_id_acc_and_seeds(tables):
    csv = tables[1]
    r = _row(csv, "lff")
    assert r["id_acc_mean"] == pytest.approx(92.0)
    assert r["id_acc_std"] == pytest.approx(np.std([90.0, 94.0], ddof=1))
    assert (csv["n_seeds"] == 2).all()


def test_one_row_per_method_with_its_own_scorer(tables, tmp_path):
    table, csv, _, _, tidy = tables
    assert list(csv["variant"]) == ["ce", "ce_control", "lff"] == list(table["variant"])  # config order
    assert list(csv.columns[:4]) == ["variant", "method", "scorer", "scorer_label"]
    assert list(csv["method"]) == ["CE", "CE control", "LFF"] and set(csv["scorer_label"]) == {"Energy"}
    for s in (*SETS, "average"):
        assert [c for c in csv.columns if c.startswith(f"{s}/") and c.endswith("_mean")] == \
            [f"{s}/{m}_mean" for m in ("fpr95", "auroc", "aupr_in", "aupr_out")]  # one metric order
    assert not [c for c in csv.columns if c.endswith("_ci_hw")]  # no standard errors in these files
    assert len(tidy) == 3 * 2 * 2 * 2 and tidy["auroc"].max() == pytest.approx(94.0)  # tidy data in percent
    # another own scorer: LFF with MSP has its MSP numbers (0.05 lower)
    _, other, _, _, _ = _write(tmp_path / "msp", _files(tmp_path), ood_order=SETS, scorers={**OWN, "lff": "msp"})
    assert _row(other, "lff")["cifar/auroc_mean"] == pytest.approx(87.0) and _row(other, "lff")["scorer"] == "msp"
    from lffood.errors import ConfigError

    with pytest.raises(ConfigError, match="variants.lff.scorer"):
        _write(tmp_path / "bad", _files(tmp_path), scorers={**OWN, "lff": "knn"})


def _cell(mean, std):
    return f"{mean:.1f} ± {std:.1f}"


def test_markdown_blocks_cells_and_bold(tables):
    md = tables[2]
    assert md.startswith("# toy, primary table\n")
    assert "Cells: mean ± standard deviation over 2 seeds" in md and "Percentages, 1 decimal" in md
    assert "Primary table: each method" in md and "toy_scorers" in md
    header, body = _md_table(md)
    # the Scorer column says Energy on every row: left out, and the note says so
    assert header == ["OOD set", "Method", "FPR95↓", "AUROC↑", "AUPR-In↑", "AUPR-Out↑", "ID acc↑"]
    assert "Every row: Scorer Energy." in md
    assert [r[0] for r in body] == [s for s in (*SETS, "average") for _ in LABELS]  # one block per set
    assert [r[1] for r in body[:3]] == ["CE", "CE control", "LFF"]
    col = {h: i for i, h in enumerate(header)}
    rows = {(r[0], r[1]): r for r in body}
    # CE cifar AUROC: 82.0 ± 2.8, not the best (LFF 92.0) -> plain
    assert rows[("cifar", "CE")][col["AUROC↑"]] == _cell(82.0, np.std([80, 84], ddof=1))
    # best AUROC of a block is bold (higher is better); best FPR95 is the lowest
    assert rows[("cifar", "LFF")][col["AUROC↑"]] == "**" + _cell(92.0, np.std([90, 94], ddof=1)) + "**"
    assert rows[("average", "LFF")][col["AUROC↑"]] == "**" + _cell(87.5, np.std([85, 90], ddof=1)) + "**"
    assert rows[("cifar", "CE control")][col["FPR95↓"]] == "**" + _cell(33.0, np.std([30, 36], ddof=1)) + "**"
    assert rows[("cifar", "LFF")][col["FPR95↓"]] == _cell(35.0, np.std([36, 34], ddof=1))
    assert rows[("average", "CE")][col["FPR95↓"]] == _cell(55.0, 0.0)
    assert rows[("svhn", "CE")][col["ID acc↑"]] == _cell(92.0, np.std([91, 93], ddof=1))  # the model's, every block
    # AUPR in the formatted table: the same on every model -> every row bold (ties share the mark)
    assert rows[("cifar", "LFF")][col["AUPR-In↑"]] == "**" + _cell(50.5, np.sqrt(0.5)) + "**"
    # exactly one bold cell per block and column where the means differ
    for s in SETS:
        for h in ("FPR95↓", "AUROC↑"):
            assert sum(r[col[h]].startswith("**") for r in body if r[0] == s) == 1, (s, h)
    # one decimal in every cell of numbers
    assert all(re.fullmatch(r"(\*\*)?\d+\.\d ± \d+\.\d(\*\*)?", c) for r in body for c in r[2:])


def test_latex_is_one_booktabs_table_with_a_rule_between_blocks(tables):
    tex = tables[3]
    assert tex.count(r"\begin{tabular}") == 1 and r"\toprule" in tex and r"\bottomrule" in tex
    assert tex.count(r"\\") == 1 + 3 * len(LABELS)  # header + 3 blocks of 3 methods
    assert tex.count(r"\midrule") == 3  # under the header, and between the 3 blocks
    assert r"AUPR-In$\uparrow$ & AUPR-Out$\uparrow$ & ID acc$\uparrow$ \\" in tex
    assert r"\textbf{92.0 $\pm$ 2.8}" in tex and "Every row: Scorer Energy." in tex
    assert "{lllllll}" not in tex and "{llccccc}" in tex  # names left, numbers centred


def test_cells_are_intervals_where_the_metrics_carry_standard_errors(tmp_path):
    from scipy import stats

    # seeds 0 and 1 with the same AUROC where both are 0.80: the spread over seeds is 0 and the interval
    # the test set's alone: q = z_0.975 (infinite df), t² = mean over seeds of se² (percent)
    ses = {(0, "cifar"): 0.01, (1, "cifar"): 0.02, (0, "svhn"): 0.03, (1, "svhn"): 0.02}
    files = _files(tmp_path, ses)
    _, csv, md, tex, tidy = _write(tmp_path, files, ood_order=SETS)
    z = stats.norm.ppf(0.975)
    assert tidy["auroc_se"].max() == pytest.approx(3.0)  # in percent, as the metric
    ce = _row(csv, "ce")
    # CE AUROC averages 75 on both seeds: the average's SE per seed is the mean of its sets' (2 and 2)
    assert ce["average/auroc_ci_hw"] == pytest.approx(z * 2.0)
    # ce_control FPR95 cifar: 30 and 36 -> s²/n = 18/2 = 9, t² = (1 + 4) / 2 = 2.5; Welch df = V² / 9² (n - 1 = 1)
    v = 9 + 2.5
    hw = stats.t.ppf(0.975, v ** 2 / 81) * np.sqrt(v)
    assert _row(csv, "ce_control")["cifar/fpr95_ci_hw"] == pytest.approx(hw)
    assert _row(csv, "ce_control")["cifar/fpr95_std"] == pytest.approx(np.sqrt(18))  # the CSV keeps both spreads
    header, body = _md_table(md)
    rows = {(r[0], r[1]): r for r in body}
    assert rows[("average", "CE")][header.index("AUROC↑")] == f"75.0 ± {z * 2:.1f}"
    assert rows[("cifar", "CE control")][header.index("FPR95↓")].strip("*") == f"33.0 ± {hw:.1f}"
    # ID accuracy has no standard error here: its spread stays the seeds' std, and the note says so
    assert rows[("cifar", "LFF")][header.index("ID acc↑")] == _cell(92.0, np.std([90, 94], ddof=1))
    assert "half-width of its 95% interval" in md and "ID acc: ± standard deviation over 2 seeds" in md
    assert "half-width of its 95\\% interval" in tex
    # a level of 0.9 narrows the interval
    _, csv90, _, _, _ = _write(tmp_path / "l90", files, ood_order=SETS, level=0.9)
    assert _row(csv90, "ce")["average/auroc_ci_hw"] == pytest.approx(stats.norm.ppf(0.95) * 2.0)


def test_one_seed_interval_covers_the_test_set_only_and_says_so(tmp_path):
    ses = {(0, "cifar"): 0.01, (0, "svhn"): 0.03}
    _, csv, md, _, _ = _write(tmp_path, _files(tmp_path, ses, seeds=[0]), ood_order=SETS)
    assert _row(csv, "lff")["svhn/auroc_ci_hw"] == pytest.approx(1.959964 * 3.0, abs=1e-5)
    assert "test set only (one seed" in md


def test_files_without_standard_errors_among_others_fall_back_to_the_seeds_std(tmp_path):
    files = _files(tmp_path, {(s, o): 0.01 for s in SEEDS for o in SETS})
    old = pd.read_csv(files[0]).drop(columns=[c for c in pd.read_csv(files[0]).columns if c.endswith("_se")])
    old.to_csv(files[0], index=False)
    integrity.seal(files[0])
    _, csv, md, _, _ = _write(tmp_path, files, ood_order=SETS)
    assert not [c for c in csv.columns if c.endswith("_ci_hw")]  # never two kinds of spread in one column
    assert "mean ± standard deviation over 2 seeds" in md


# ----------------------------------------------------------------------------- every scorer on every model
def _tidy(benchmarks=("toy",)):
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

    t = scorer_table(_tidy(), scorers=["odin", "knn"], variants=list(LABELS), labels=LABELS)
    assert list(zip(t["scorer"], t["variant"])) == [(s, v) for s in ("odin", "knn") for v in ("ce", "ce_control", "lff")]
    assert list(t["scorer_label"][:1]) == ["ODIN"] and "KNN" in set(t["scorer_label"])
    assert list(t["method"][:3]) == ["CE", "CE control", "LFF"]
    r = t.set_index(["scorer", "variant"]).loc[("knn", "lff")]
    vals = np.array([100 * AUROC["lff"][s]["svhn"] - 5 for s in SEEDS])
    assert r["svhn/auroc_mean"] == pytest.approx(vals.mean(), abs=1e-9)
    assert r["svhn/auroc_std"] == pytest.approx(vals.std(ddof=1), abs=1e-9)
    avg = np.array([np.mean([100 * AUROC["lff"][s][o] - 5 for o in SETS]) for s in SEEDS])
    assert r["average/auroc_mean"] == pytest.approx(avg.mean(), abs=1e-9)
    assert r["average/auroc_std"] == pytest.approx(avg.std(ddof=1), abs=1e-9)
    assert r["n_seeds"] == 2 and "cifar/aupr_in_mean" in t.columns  # every metric by default
    only = scorer_table(_tidy(), metrics=("fpr95", "auroc"))
    assert "cifar/fpr95_mean" in only.columns and "cifar/aupr_in_mean" not in only.columns


def test_scorer_table_across_benchmarks_for_table4():
    from lffood.report.tables import scorer_markdown, scorer_table

    t = scorer_table(_tidy(("c10", "c100")), by_benchmark=True, ood_order=["average"], variants=list(LABELS),
                     labels=LABELS)
    assert {"c10/average/auroc_mean", "c100/average/fpr95_std", "c10/id_acc_mean"} <= set(t.columns)
    r = t.set_index(["scorer", "variant"]).loc[("odin", "ce")]
    assert r["c10/average/auroc_mean"] - r["c100/average/auroc_mean"] == pytest.approx(1.0)
    md = scorer_markdown(t, "Table IV")
    assert "c100/average AUROC↑" in md and md.count("| ODIN |") == 3
    with pytest.raises(ValueError, match="by_benchmark"):
        scorer_table(_tidy(("c10", "c100")))


def _sealed(tmp_path, tidy):
    files = []
    for (v, s), grp in tidy.groupby(["variant", "seed"]):
        p = tmp_path / f"{v}_{s}.csv"
        g = grp.copy()
        for m in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_acc"):
            g[m] = g[m] / 100  # metric files hold fractions
        g.to_csv(p, index=False)
        integrity.seal(p)
        files.append(str(p))
    return files


def test_write_scorer_table(tmp_path):
    from lffood.report.tables import write_scorer_table

    t = write_scorer_table(_sealed(tmp_path, _tidy()), csv=str(tmp_path / "t.csv"), md=str(tmp_path / "t.md"),
                           tex=str(tmp_path / "t.tex"), title="toy, secondary table", labels=LABELS,
                           ood_order=["svhn", "cifar"], scorers=["knn", "odin"])
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back["scorer"].unique()) == ["knn", "odin"] and len(back) == len(t) == 6
    cols = [c for c in back.columns if c.endswith("/auroc_mean")]
    assert cols == ["svhn/auroc_mean", "cifar/auroc_mean", "average/auroc_mean"]
    assert "svhn/aupr_out_mean" in back.columns  # the CSV has every metric; the formatted table two
    md = (tmp_path / "t.md").read_text()
    header, _ = _md_table(md)
    assert header == ["Scorer", "Model", "svhn FPR95↓", "svhn AUROC↑", "cifar FPR95↓", "cifar AUROC↑",
                      "average FPR95↓", "average AUROC↑"]
    assert "| KNN | LFF |" in md and "±" in md and "**" in md and "Secondary table" in md
    tex = (tmp_path / "t.tex").read_text()
    assert tex.count("\\midrule") == 2 and "KNN & LFF &" in tex  # header rule + one between the scorer blocks


def test_a_model_column_of_one_model_is_left_out(tmp_path):
    from lffood.report.tables import write_scorer_table

    tidy = _tidy()
    write_scorer_table(_sealed(tmp_path, tidy[tidy["variant"] == "lff"]), csv=str(tmp_path / "t.csv"),
                       md=str(tmp_path / "t.md"), tex=str(tmp_path / "t.tex"), title="one model", labels={"lff": "LFF"})
    md = (tmp_path / "t.md").read_text()
    header, body = _md_table(md)
    assert header[:2] == ["Scorer", "cifar FPR95↓"] and [r[0] for r in body] == ["ODIN", "KNN"]
    assert "Every row: Model LFF." in md


def test_mean_std_cell_and_seed_std():
    from lffood.report.tables import cell, mean_std, number, seed_std

    assert mean_std(94.56, 1.04) == "94.6 ± 1.0"
    assert mean_std(1.8, 1.2, signed=True) == "+1.8 ± 1.2" and mean_std(-0.04, 0.1, signed=True) == "-0.0 ± 0.1"
    assert mean_std(12.345, 0.5, digits=2, pm=r"{\scriptsize$\pm$") == r"12.35{\scriptsize$\pm$0.50"
    assert number(3.14159) == "3.1" and number(0.26, signed=True) == "+0.3"
    assert seed_std([1.0, 2.0, 3.0]) == 1.0 and seed_std([5.0]) == 0.0  # ddof=1; one seed: no spread
    r = {"a/auroc_mean": 90.04, "a/auroc_std": 1.26, "a/auroc_ci_hw": 3.14, "b/auroc_mean": np.nan}
    assert cell(r, "a/auroc") == "90.0 ± 3.1" and cell(r, "b/auroc") == "–"  # the interval where there is one
    assert cell({"a/auroc_mean": 90.04, "a/auroc_std": 1.26}, "a/auroc", "WM") == "WM: 90.0 ± 1.3"
