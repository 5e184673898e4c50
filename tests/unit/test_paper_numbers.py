"""The paper's printed Tables I-IV (src/lffood/resources/paper/lff_tables.csv): row counts against the seed
text, spot checks of printed values and marks, the known inconsistencies, the name mapping and
the loader's errors on a corrupted copy."""

import re

import pandas as pd
import pytest

from conftest import REPO  # noqa: E402
from lffood.errors import DataError
from lffood.report import paper_numbers as pn
from lffood.report.paper_tables import POSTHOC

SEED = REPO.parent / "shared" / "seeds" / "001_3c57e334e5c30886.txt"
needs_seed = pytest.mark.skipif(
    not SEED.is_file(), reason=f"the paper's seed text {SEED} is not present (CI keeps ../shared beside the clone)")

# Column groups of each printed table, left to right (Table I: one group per ID-dataset row block).
GROUPS = {
    "TABLE I:": {"CIFAR-10": "cifar10_resnet34", "CIFAR-100": "cifar100_resnet34"},
    "TABLE II:": {"CIFAR-10": "cifar10_wrn28_10", "CIFAR-100": "cifar100_wrn28_10"},
    "TABLE III:": {None: "imagenet100_resnet50"},
    "TABLE IV:": {"CIFAR-10": "cifar10_resnet34", "CIFAR-100": "cifar100_resnet34", "ImageNet": "imagenet100_resnet50"},
}
NUMBER = re.compile(r"^(<[bu]>)?\d+\.\d\d(</[bu]>)?$")


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return pn.load()


def _seed_table(title: str) -> list[list[str]]:
    """The tab-separated lines of one table: from the line after its caption to the next blank line."""
    lines = SEED.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        out.append(line.split("\t"))
    return out


def _method(label: str) -> str:
    return re.sub(r"<[^>]+>", "", label).replace("†", "").strip()


def _seed_rows(title: str) -> dict[str, list[tuple[str, int]]]:
    """Per benchmark: (method, number of printed cells) for each method row of the seed's table."""
    rows = _seed_table(title)
    out: dict[str, list[tuple[str, int]]] = {}
    if title == "TABLE I:":  # rows: ID dataset, method, 14 cells; the ID dataset names a row block
        bench = None
        for r in rows:
            if r[0] in GROUPS[title]:
                bench = GROUPS[title][r[0]]
            n = sum(bool(NUMBER.match(c)) for c in r[2:])
            if n:
                out.setdefault(bench, []).append((_method(r[1]), n))
        return out
    if title == "TABLE III:":  # rows: method, 10 cells, one benchmark
        return {GROUPS[title][None]: [(_method(r[0]), sum(bool(NUMBER.match(c)) for c in r[1:]))
                                      for r in rows if any(NUMBER.match(c) for c in r[1:])]}
    # Tables II and IV: the first header line names the column group of each column (a group spans
    # its FPR95 and AUROC columns, the name sits over the first).
    column_group, current = [], None
    for c in rows[0]:
        current = GROUPS[title].get(c, current)
        column_group.append(current)
    for r in rows:
        if not any(NUMBER.match(c) for c in r[1:]):
            continue
        for bench in GROUPS[title].values():
            n = sum(bool(NUMBER.match(c)) for c, g in zip(r, column_group) if g == bench)
            out.setdefault(bench, []).append((_method(r[0]), n))
    return out


def test_resource_loads_with_the_expected_shape(df):
    assert tuple(df.columns) == pn.COLUMNS
    assert df.groupby("table").size().to_dict() == {"table1": 504, "table2": 68, "table3": 180, "table4": 60}
    assert df["value"].dtype == float and df["extra_data"].dtype == bool
    assert set(df["metric"]) == {"fpr95", "auroc"}
    assert set(df["mark"]) == {"", "bold", "underline"}


@needs_seed
@pytest.mark.parametrize("title,table", [("TABLE I:", "table1"), ("TABLE II:", "table2"),
                                         ("TABLE III:", "table3"), ("TABLE IV:", "table4")])
def test_row_counts_and_methods_match_the_seed(df, title, table):
    seed = _seed_rows(title)
    counts = df[df["table"] == table].groupby("benchmark", sort=False).size().to_dict()
    assert counts == {bench: sum(n for _, n in rows) for bench, rows in seed.items()}
    for bench, rows in seed.items():
        sub = df[(df["table"] == table) & (df["benchmark"] == bench)]
        assert list(dict.fromkeys(sub["method"])) == [m for m, _ in rows], bench


@needs_seed
def test_seed_row_counts_are_the_papers_layout():
    # guards the parser above: 18 methods in Tables I and III, 17 in Table II (no NPOS), 10 in Table IV
    assert {b: len(r) for b, r in _seed_rows("TABLE I:").items()} == {"cifar10_resnet34": 18, "cifar100_resnet34": 18}
    assert [n for _, n in _seed_rows("TABLE I:")["cifar10_resnet34"]] == [14] * 18
    assert [m for m, _ in _seed_rows("TABLE II:")["cifar10_wrn28_10"]].count("NPOS") == 0
    assert len(_seed_rows("TABLE II:")["cifar100_wrn28_10"]) == 17
    assert [n for _, n in _seed_rows("TABLE III:")["imagenet100_resnet50"]] == [10] * 18
    assert [n for _, n in _seed_rows("TABLE IV:")["imagenet100_resnet50"]] == [2] * 10


def test_rows_are_in_the_papers_order(df):
    assert list(dict.fromkeys(df["table"])) == ["table1", "table2", "table3", "table4"]
    for table, benches in pn.BENCHMARKS.items():
        assert list(dict.fromkeys(df[df["table"] == table]["benchmark"])) == list(benches)
    first = df.iloc[:14]
    assert (first["method"] == "MSP").all() and (first["benchmark"] == "cifar10_resnet34").all()
    assert list(first["ood_set"][::2]) == ["svhn", "lsun_crop", "lsun_resize", "isun", "textures", "places365",
                                           "average"]
    assert list(first["metric"][:2]) == ["fpr95", "auroc"]
    last = df.iloc[-1]
    assert (last["table"], last["benchmark"], last["method"], last["metric"]) == (
        "table4", "imagenet100_resnet50", "FeatureNorm+Ours", "auroc")


@pytest.mark.parametrize("table,bench,method,ood,metric,value,mark", [
    ("table1", "cifar10_resnet34", "MSP", "svhn", "fpr95", 33.79, ""),
    ("table1", "cifar10_resnet34", "FeatureNorm", "lsun_crop", "fpr95", 0.53, ""),
    ("table1", "cifar10_resnet34", "LiNe", "places365", "auroc", 80.02, ""),
    ("table1", "cifar10_resnet34", "Ours", "average", "auroc", 97.30, ""),
    ("table1", "cifar100_resnet34", "Mahalanobis", "lsun_crop", "auroc", 36.04, ""),
    ("table1", "cifar100_resnet34", "TagFog", "lsun_resize", "fpr95", 32.62, ""),
    ("table1", "cifar100_resnet34", "Ours", "svhn", "fpr95", 10.47, ""),
    ("table2", "cifar10_wrn28_10", "Mahalanobis", "average", "auroc", 70.50, ""),
    ("table2", "cifar10_wrn28_10", "TagFog", "average", "fpr95", 9.95, "bold"),
    ("table2", "cifar10_wrn28_10", "Ours", "average", "fpr95", 10.86, "underline"),
    ("table2", "cifar100_wrn28_10", "SSD+", "average", "fpr95", 45.20, "underline"),
    ("table2", "cifar100_wrn28_10", "LINE", "average", "fpr95", 65.11, ""),
    ("table2", "cifar100_wrn28_10", "Ours", "average", "auroc", 93.03, "bold"),
    ("table3", "imagenet100_resnet50", "Mahalanobis", "textures", "fpr95", 38.44, ""),
    ("table3", "imagenet100_resnet50", "ViM", "textures", "auroc", 96.07, "underline"),
    ("table3", "imagenet100_resnet50", "SSD+", "textures", "fpr95", 7.97, "bold"),
    ("table3", "imagenet100_resnet50", "LINE", "inaturalist", "fpr95", 27.38, ""),
    ("table3", "imagenet100_resnet50", "TagFog", "average", "fpr95", 33.50, "underline"),
    ("table3", "imagenet100_resnet50", "Ours", "sun", "fpr95", 25.93, "bold"),
    ("table4", "cifar10_resnet34", "MSP+Ours", "average", "fpr95", 19.77, "bold"),
    ("table4", "cifar100_resnet34", "Energy", "average", "auroc", 83.64, ""),
    ("table4", "imagenet100_resnet50", "ODIN", "average", "fpr95", 49.83, ""),
    ("table4", "imagenet100_resnet50", "FeatureNorm+Ours", "average", "auroc", 85.66, "bold"),
])
def test_printed_values_and_marks(df, table, bench, method, ood, metric, value, mark):
    assert pn.lookup(df, table, bench, method, ood, metric) == value
    row = df[(df["table"] == table) & (df["benchmark"] == bench) & (df["method"] == method)
             & (df["ood_set"] == ood) & (df["metric"] == metric)]
    assert list(row["mark"]) == [mark]


def test_lookup_of_a_cell_the_paper_does_not_print(df):
    assert pn.lookup(df, "table2", "cifar10_wrn28_10", "NPOS", "average", "fpr95") is None
    assert pn.lookup(df, "table1", "cifar10_resnet34", "LINE", "svhn", "fpr95") is None  # printed "LiNe"


def test_only_tagfog_uses_extra_data(df):
    assert set(df[df["extra_data"]]["method"]) == {"TagFog"}
    assert df[df["method"] == "TagFog"]["extra_data"].all()
    assert not df["method"].str.contains("†").any()


def test_table1_carries_no_marks_in_the_seed(df):
    # documented in src/lffood/resources/paper/README.md: the conversion lost Table I's marks
    assert set(df[df["table"] == "table1"]["mark"]) == {""}


def test_cifar100_energy_auroc_average_is_flagged(df):
    probs = pn.average_problems(df)
    hit = probs[(probs["table"] == "table1") & (probs["benchmark"] == "cifar100_resnet34")
                & (probs["method"] == "Energy") & (probs["metric"] == "auroc")]
    assert len(hit) == 1
    assert hit["printed"].iloc[0] == 83.64
    assert round(hit["row_mean"].iloc[0], 2) == 82.77
    assert hit["n_sets"].iloc[0] == 6
    cell = df[(df["table"] == "table1") & (df["benchmark"] == "cifar100_resnet34") & (df["method"] == "Energy")
              & (df["ood_set"] == "average") & (df["metric"] == "auroc")]
    assert list(cell["flag"]) == ["average_differs_from_row_mean"]


def test_flagged_averages_are_exactly_those_beyond_rounding(df):
    keys = ["table", "benchmark", "method", "metric"]
    flagged = df[df["flag"].str.contains("^average_differs_from_row_mean")]
    assert set(map(tuple, flagged[keys].to_numpy())) == set(map(tuple, pn.average_problems(df)[keys].to_numpy()))
    assert len(flagged) == 11
    assert pn.average_problems(df)["diff"].abs().max() == pytest.approx(0.8667, abs=1e-4)


def test_average_problems_tolerates_rounding_only():
    def rows(avg):
        cells = [("svhn", 10.00), ("isun", 10.01), ("average", avg)]
        return pd.DataFrame([{"table": "table1", "benchmark": "b", "method": "M", "ood_set": s, "metric": "fpr95",
                              "value": v} for s, v in cells])
    # row mean 10.005: printed 10.01 or 10.00 is rounding; 10.02 is not
    assert pn.average_problems(rows(10.01)).empty and pn.average_problems(rows(10.00)).empty
    probs = pn.average_problems(rows(10.02))
    assert len(probs) == 1 and probs["diff"].iloc[0] == pytest.approx(0.015)
    assert pn.average_problems(rows(10.02), tol=0.02).empty


def test_npos_imagenet_fpr95_is_what_table3_prints(df):
    npos = pn.lookup(df, "table3", "imagenet100_resnet50", "NPOS", "average", "fpr95")
    ours = pn.lookup(df, "table3", "imagenet100_resnet50", "Ours", "average", "fpr95")
    assert (npos, ours) == (36.13, 31.83)
    assert round(npos - ours, 2) == 4.30
    text = [p for p in pn.check(df) if p.startswith("section")]
    assert len(text) == 1 and "NPOS by 4.03" in text[0] and "= 4.30" in text[0]
    cell = df[(df["table"] == "table3") & (df["method"] == "NPOS") & (df["ood_set"] == "average")
              & (df["metric"] == "fpr95")]
    assert list(cell["flag"]) == ["text_quotes_different_gap"]


def test_table4_repeats_the_table1_and_table3_averages(df):
    t4 = df[df["table"] == "table4"]
    compared = 0
    for r in t4.itertuples():
        source = pn.SOURCE_TABLE[r.benchmark]
        if pn.method_kind(r.method) == "posthoc":
            assert pn.lookup(df, source, r.benchmark, r.method, "average", r.metric) == r.value
            compared += 1
        elif r.method == "ReAct+Ours":
            assert pn.lookup(df, source, r.benchmark, "Ours", "average", r.metric) == r.value
            compared += 1
    assert compared == 36
    assert not [p for p in pn.check(df) if p.startswith("table4")]
    # the two repeated averages that are not their row's mean carry their own flag
    copied = t4[t4["flag"] == "copied_average_differs_from_row_mean"]
    assert set(zip(copied["benchmark"], copied["method"], copied["metric"])) == {
        ("cifar100_resnet34", "Energy", "auroc"), ("imagenet100_resnet50", "ReAct", "auroc")}


def test_mean_of_row_and_the_row_it_comes_from(df):
    assert pn.source_row("table1", "cifar100_resnet34", "Energy") == ("table1", "Energy")
    assert pn.source_row("table4", "cifar100_resnet34", "Energy") == ("table1", "Energy")
    assert pn.source_row("table4", "imagenet100_resnet50", "ReAct+Ours") == ("table3", "Ours")
    assert pn.source_row("table4", "cifar10_resnet34", "MSP+Ours") is None  # no per-set values printed
    assert pn.source_row("table2", "cifar10_wrn28_10", "Energy") is None
    assert pn.mean_of_row(df, "table1", "cifar100_resnet34", "Energy", "auroc") == pytest.approx(82.7733, abs=1e-4)
    assert pn.mean_of_row(df, "table4", "cifar100_resnet34", "Energy", "auroc") == pytest.approx(82.7733, abs=1e-4)
    assert pn.mean_of_row(df, "table2", "cifar10_wrn28_10", "Energy", "auroc") is None
    # every flagged average differs from the row mean as average_problems reports it
    for r in pn.average_problems(df).itertuples():
        assert pn.mean_of_row(df, r.table, r.benchmark, r.method, r.metric) == pytest.approx(r.row_mean)


def test_flag_notes_say_what_is_inconsistent(df):
    note = pn.flag_note(df, "table1", "cifar100_resnet34", "Energy", "average", "auroc")
    assert "83.64" in note and "82.773" in note and "+0.867" in note
    # the mean is rounded half up from the exact mean of cents (90.3725), as the CSV's README.md
    # (src/lffood/resources/paper/) gives it
    assert "90.373" in pn.flag_note(df, "table3", "imagenet100_resnet50", "ReAct", "average", "auroc")
    copied = pn.flag_note(df, "table4", "cifar100_resnet34", "Energy", "average", "auroc")
    assert "Table I row it repeats" in copied and "82.773" in copied
    assert "4.03" in pn.flag_note(df, "table3", "imagenet100_resnet50", "NPOS", "average", "fpr95")
    assert "second best" in pn.flag_note(df, "table3", "imagenet100_resnet50", "NPOS", "sun", "auroc")
    assert "does not underline" in pn.flag_note(df, "table3", "imagenet100_resnet50", "LogitNorm", "sun", "fpr95")
    assert pn.flag_note(df, "table1", "cifar100_resnet34", "MSP", "average", "auroc") == ""  # not flagged
    assert pn.flag_note(df, "table2", "cifar10_wrn28_10", "NPOS", "average", "auroc") == ""  # not printed
    flagged = df[df["flag"] != ""]
    assert all(pn.flag_note(df, r.table, r.benchmark, r.method, r.ood_set, r.metric) for r in flagged.itertuples())


def test_check_reports_a_table4_cell_that_differs(df):
    bad = df.copy()
    i = bad.index[(bad["table"] == "table4") & (bad["benchmark"] == "cifar10_resnet34") & (bad["method"] == "ODIN")
                  & (bad["metric"] == "fpr95")][0]
    bad.loc[i, "value"] = 33.60
    problems = [p for p in pn.check(bad) if p.startswith("table4")]
    assert problems == ["table4 cifar10_resnet34 ODIN fpr95 = 33.60, but table1 ODIN average = 33.06"]


def test_check_reports_the_misplaced_marks(df):
    marks = [p for p in pn.check(df) if "marked" in p]
    assert len(marks) == 5
    assert any(p.startswith("table2 cifar100_wrn28_10 average fpr95: VOS 73.90 is marked underline") for p in marks)
    assert any(p.startswith("table3 imagenet100_resnet50 sun auroc: NPOS 92.56 is marked underline") for p in marks)
    assert any(p.startswith("table3 imagenet100_resnet50 places fpr95: LogitNorm 37.78 is the second best")
               for p in marks)
    flagged = df[df["flag"].isin(["underline_not_second_best", "second_best_not_underlined"])]
    assert len(flagged) == 5
    # Table IV's pairs are marked consistently; a swapped bold is reported
    bad = df.copy()
    i = bad.index[(bad["table"] == "table4") & (bad["method"] == "MSP+Ours") & (bad["benchmark"] == "cifar10_resnet34")
                  & (bad["metric"] == "auroc")][0]
    bad.loc[i, "mark"] = ""
    assert [p for p in pn.check(bad) if "should be bold" in p] == [
        "table4 cifar10_resnet34 auroc: MSP 92.09 vs MSP+Ours 96.61: "
        "the better of the two, and only it, should be bold"]


def test_check_lists_every_known_inconsistency_and_nothing_else(df):
    problems = pn.check(df)
    assert len(problems) == 11 + 5 + 1  # averages, marks, the NPOS gap in the text
    assert problems[4] == ("table1 cifar100_resnet34 Energy auroc: printed average 83.64, row mean 82.773 "
                           "(difference +0.867)")


def test_method_kind_and_scorer_mapping(df):
    assert {m: pn.method_kind(m) for m in ("MSP", "LiNe", "LINE", "DICE+ReAct", "NPOS", "TagFog", "Ours",
                                           "ReAct+Ours")} == {
        "MSP": "posthoc", "LiNe": "posthoc", "LINE": "posthoc", "DICE+ReAct": "posthoc", "NPOS": "training",
        "TagFog": "training", "Ours": "ours", "ReAct+Ours": "ours"}
    assert {pn.method_kind(m) for m in df["method"].unique()} == {"posthoc", "training", "ours"}
    assert pn.scorer_name("LINE") == pn.scorer_name("LiNe") == "line"
    assert pn.scorer_name("DICE+ReAct") == "dice_react"
    assert pn.scorer_name("FeatureNorm+Ours") == "featurenorm"
    assert pn.scorer_name("Ours") == "react"
    assert pn.scorer_name("CIDER") is None
    # the same names the paper tables of the workflow use (KNN is not in the paper)
    assert set(pn.POSTHOC_SCORERS.values()) == {s for _, s in POSTHOC} - {"knn"}
    for label, scorer in POSTHOC:
        if scorer != "knn":
            assert pn.scorer_name(label) == scorer
    for name in ("KNN", "Foo+Ours", "CIDER+Ours", ""):
        with pytest.raises(ValueError, match="unknown printed method"):
            pn.method_kind(name)


def test_registry_labels_and_order_are_the_papers(df):
    """The scorer registry's labels and order are Table I's: its post-hoc rows, spelled and ordered as
    printed; the CSV's other spellings (Tables II, III) are the only names not taken from the registry."""
    from lffood.scorers import paper_scorers, scorer_class

    t1 = df[(df["table"] == "table1") & (df["benchmark"] == "cifar10_resnet34")]
    printed = [m for m in dict.fromkeys(t1["method"]) if pn.method_kind(m) == "posthoc"]
    assert printed == [scorer_class(s).label for s in paper_scorers()]
    others = {m for m in df["method"].unique() if pn.method_kind(m) == "posthoc"} - set(printed)
    assert others == set(pn.PRINTED_VARIANTS) == {"LINE"}


def _corrupt(tmp_path, edit):
    """A copy of the shipped CSV with ``edit`` applied to its lines."""
    lines = edit(pn.DEFAULT_PATH.read_text().splitlines(keepends=True))
    path = tmp_path / "lff_tables.csv"
    path.write_text("".join(lines))
    return path


def _line(n: int, old: str, new: str):
    """An edit of the CSV's text: replace ``old`` by ``new`` in line ``n`` (header = line 1)."""
    def edit(lines):
        assert old in lines[n - 1]
        return lines[:n - 1] + [lines[n - 1].replace(old, new)] + lines[n:]
    return edit


# line 2: table1,cifar10_resnet34,MSP,False,svhn,fpr95,33.79,,   line 4: ...,lsun_crop,fpr95,20.47,,
@pytest.mark.parametrize("edit,message", [
    (_line(4, ",20.47,", ",120.47,"), r"line 4: value 120\.47 is outside 0\.\.100"),
    (_line(4, ",20.47,", ",-1.00,"), r"line 4: value -1\.00 is outside 0\.\.100"),
    (_line(4, ",20.47,", ",n/a,"), r"line 4: value 'n/a' is not a number"),
    (_line(2, ",svhn,", ",sun,"), r"line 2: ood_set 'sun' is not valid for table1 cifar10_resnet34"),
    (_line(2, ",fpr95,", ",FPR95,"), r"line 2: metric 'FPR95' is not one of"),
    (_line(2, ",33.79,,", ",33.79,italic,"), r"line 2: mark 'italic' is not one of"),
    (_line(2, ",33.79,,", ",33.79,,looks_odd"), r"line 2: flag 'looks_odd' is not one of"),
    (_line(2, "cifar10_resnet34", "cifar10_wrn28_10"), r"line 2: benchmark 'cifar10_wrn28_10' is not in table1"),
    (lambda lines: lines + [lines[3]], r"line 814: the cell \(table1, cifar10_resnet34, MSP, lsun_crop, fpr95\) "
                                        r"is listed twice"),
    (_line(1, "ood_set", "ood"), r"columns are .*'ood'.*; expected exactly"),
])
def test_load_rejects_a_corrupted_copy(tmp_path, edit, message):
    path = _corrupt(tmp_path, edit)
    with pytest.raises(DataError, match=message) as err:
        pn.load(path)
    assert str(path) in str(err.value)


def test_load_names_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing"):
        pn.load(tmp_path / "nothing.csv")
