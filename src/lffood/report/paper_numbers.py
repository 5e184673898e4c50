"""The LFF paper's own printed numbers (Tables I-IV), shipped as ``src/lffood/resources/paper/lff_tables.csv``.

One row per printed cell: ``table`` (table1..table4), ``benchmark`` (the project's benchmark name),
``method`` (as printed, the dagger moved to ``extra_data``), ``ood_set`` (the project's OOD set name,
or ``average``), ``metric`` (fpr95 | auroc), ``value`` (percent, as printed), ``mark`` (bold |
underline | empty) and ``flag`` (empty, or a note on a cell that is inconsistent as printed).
``src/lffood/resources/paper/README.md`` says how the file was transcribed and lists every flag.

The values are kept exactly as printed, inconsistencies included, so that the reproduced tables
are compared with what the paper shows; :func:`check` recomputes the inconsistencies from the
values, so a transcription error and a printing error are told apart by reading its report.
"""

from __future__ import annotations

import os
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..names import OOD_SETS_BY_SOURCE, PAPER_NUMBERS
from ..scorers import paper_scorers, scorer_class
from .tables import AVERAGE

DEFAULT_PATH = PAPER_NUMBERS
COLUMNS = ("table", "benchmark", "method", "extra_data", "ood_set", "metric", "value", "mark", "flag")
KEY = ["table", "benchmark", "method", "ood_set", "metric"]
METRICS = ("fpr95", "auroc")
MARKS = ("", "bold", "underline")
#: The notes the ``flag`` column may hold (several are joined by ";"); README.md explains each.
FLAGS = (
    "average_differs_from_row_mean",  # Table I/III: the printed average is not the mean of its row
    "copied_average_differs_from_row_mean",  # Table IV: repeats such an average of Table I/III
    "underline_not_second_best",  # underlined, but not the second best value of its column
    "second_best_not_underlined",  # the second best value of its column, but not underlined
    "text_quotes_different_gap",  # the text quotes a gap to this cell that the table does not give
)
#: The benchmarks of each table's column groups, in the paper's order.
BENCHMARKS = {
    "table1": ("cifar10_resnet34", "cifar100_resnet34"),
    "table2": ("cifar10_wrn28_10", "cifar100_wrn28_10"),
    "table3": ("imagenet100_resnet50",),
    "table4": ("cifar10_resnet34", "cifar100_resnet34", "imagenet100_resnet50"),
}
#: Tables printed per OOD set (plus the average); Tables II and IV print only averages.
PER_OOD_TABLES = ("table1", "table3")
#: Where a Table IV baseline row is printed per OOD set: its average cells must be the same numbers.
SOURCE_TABLE = {"cifar10_resnet34": "table1", "cifar100_resnet34": "table1", "imagenet100_resnet50": "table3"}

#: Other spellings of a post-hoc method in the paper's tables: Table I prints "LiNe" (the scorer's
#: label), Tables II and III print "LINE".
PRINTED_VARIANTS = {"LINE": "line"}
#: Printed post-hoc method name -> the project's scorer name: the registry's paper scorers under their
#: labels (lffood.scorers, ``in_paper``), and the other spellings.
POSTHOC_SCORERS = {**{scorer_class(s).label: s for s in paper_scorers()}, **PRINTED_VARIANTS}
#: Training-regularisation baselines the project does not reproduce (printed names).
TRAINING_METHODS = ("CSI", "SSD+", "VOS", "LogitNorm", "NPOS", "CIDER", "TagFog")
#: The scorer the paper's "Ours" rows use: the energy score with ReAct clipping (section IV);
#: Table IV's "ReAct+Ours" cells are the same numbers as Table I/III's "Ours" (checked by :func:`check`).
OURS_SCORER = "react"

#: The gaps the paper's text quotes between "Ours" and a baseline (sections V.B and V.C):
#: (section, table, benchmark, baseline, metric, quoted gap in percentage points).
TEXT_CLAIMS = (
    ("V.B", "table1", "cifar100_resnet34", "TagFog", "auroc", 2.11),
    ("V.B", "table1", "cifar100_resnet34", "TagFog", "fpr95", 10.46),
    ("V.B", "table1", "cifar100_resnet34", "VOS", "fpr95", 45.71),
    ("V.B", "table1", "cifar100_resnet34", "NPOS", "fpr95", 11.02),
    ("V.C", "table3", "imagenet100_resnet50", "TagFog", "fpr95", 1.67),
    ("V.C", "table3", "imagenet100_resnet50", "TagFog", "auroc", 0.96),
    ("V.C", "table3", "imagenet100_resnet50", "VOS", "fpr95", 26.02),
    ("V.C", "table3", "imagenet100_resnet50", "NPOS", "fpr95", 4.03),
)

#: Largest difference between a printed average and the mean of its printed row that rounding
#: alone explains: every printed cell is within 0.005 of its unrounded value, so the mean of the
#: printed cells is within 0.005 of the unrounded average, which is itself printed to within
#: 0.005. The bound is 0.01; 0.011 leaves room for floating-point error in the mean.
ROUNDING_TOL = 0.011


def _ood_sets(benchmark: str) -> tuple[str, ...]:
    sets = OOD_SETS_BY_SOURCE["imagenet100" if benchmark.startswith("imagenet") else "cifar10"]
    return (*sets, AVERAGE)


def _row_problem(r: dict) -> str | None:
    """What is wrong with one row of the CSV (all fields as text), or None."""
    if r["table"] not in BENCHMARKS:
        return f"table {r['table']!r} is not one of {list(BENCHMARKS)}"
    if r["benchmark"] not in BENCHMARKS[r["table"]]:
        return (f"benchmark {r['benchmark']!r} is not in {r['table']} "
                f"(expected one of {list(BENCHMARKS[r['table']])})")
    allowed = _ood_sets(r["benchmark"]) if r["table"] in PER_OOD_TABLES else (AVERAGE,)
    if r["ood_set"] not in allowed:
        return (f"ood_set {r['ood_set']!r} is not valid for {r['table']} {r['benchmark']} "
                f"(expected one of {list(allowed)})")
    if not r["method"]:
        return "method is empty"
    if r["metric"] not in METRICS:
        return f"metric {r['metric']!r} is not one of {list(METRICS)}"
    if r["extra_data"] not in ("True", "False"):
        return f"extra_data {r['extra_data']!r} is not True or False"
    if r["mark"] not in MARKS:
        return f"mark {r['mark']!r} is not one of {list(MARKS)}"
    unknown = [f for f in r["flag"].split(";") if f and f not in FLAGS]
    if unknown:
        return f"flag {unknown[0]!r} is not one of {list(FLAGS)}"
    try:
        value = float(r["value"])
    except ValueError:
        return f"value {r['value']!r} is not a number"
    if not 0.0 <= value <= 100.0:
        return f"value {r['value']} is outside 0..100 (all values are percentages)"
    return None


def load(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The paper's cells, one row each, in the paper's order; ``value`` float, ``extra_data`` bool.

    ``path`` defaults to the CSV shipped in this checkout. Raises :class:`lffood.errors.DataError`
    naming the file and the line (header = line 1) when a column is missing or renamed, a row has
    an unknown name or a value outside 0..100, or a cell is listed twice."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise DataError(f"{path}: the paper's numbers are missing (expected src/lffood/resources/paper/lff_tables.csv)")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(raw.columns) != COLUMNS:
        raise DataError(f"{path}: columns are {list(raw.columns)}; expected exactly {list(COLUMNS)}")
    for i, r in enumerate(raw.to_dict("records")):
        problem = _row_problem(r)
        if problem is not None:
            raise DataError(f"{path}, line {i + 2}: {problem}")
    duplicated = raw.duplicated(KEY, keep="first")
    if duplicated.any():
        i = int(np.flatnonzero(duplicated.to_numpy())[0])
        cell = ", ".join(raw.loc[i, KEY])
        raise DataError(f"{path}, line {i + 2}: the cell ({cell}) is listed twice")
    df = raw.copy()
    df["value"] = df["value"].astype(float)
    df["extra_data"] = df["extra_data"] == "True"
    return df


def lookup(df: pd.DataFrame, table: str, benchmark: str, method: str, ood_set: str, metric: str) -> float | None:
    """The printed value of one cell, or None when the paper does not print it."""
    hit = df[(df["table"] == table) & (df["benchmark"] == benchmark) & (df["method"] == method)
             & (df["ood_set"] == ood_set) & (df["metric"] == metric)]
    if hit.empty:
        return None
    return float(hit["value"].iloc[0])


def method_kind(method: str) -> str:
    """The kind of a printed method: "posthoc" (a scorer on the CE model), "training" (a
    training-regularisation baseline the project does not reproduce) or "ours" (the LFF model:
    "Ours" and Table IV's "<post-hoc method>+Ours"). Raises ValueError for a name not in the paper."""
    if method in POSTHOC_SCORERS:
        return "posthoc"
    if method in TRAINING_METHODS:
        return "training"
    if method == "Ours" or (method.endswith("+Ours") and method.removesuffix("+Ours") in POSTHOC_SCORERS):
        return "ours"
    raise ValueError(f"unknown printed method {method!r}")


def scorer_name(method: str) -> str | None:
    """The project's scorer that produces a printed row: the post-hoc scorer itself, the scorer
    before "+Ours", :data:`OURS_SCORER` for "Ours"; None for training baselines (not reproduced).
    With :func:`method_kind` ("posthoc" = the CE model, "ours" = the LFF model) this joins the
    paper's rows with the reproduced ones."""
    kind = method_kind(method)
    if kind == "training":
        return None
    if method == "Ours":
        return OURS_SCORER
    return POSTHOC_SCORERS[method.removesuffix("+Ours")]


def average_problems(df: pd.DataFrame, tol: float = ROUNDING_TOL) -> pd.DataFrame:
    """Printed averages that are not the mean of their row.

    For every (table, benchmark, method, metric) with per-OOD-set cells and a printed average:
    ``printed``, ``row_mean`` (mean of the printed per-OOD-set cells), ``diff`` (printed - row_mean)
    and ``n_sets``; only rows with ``|diff| > tol``. The default ``tol`` is the largest difference
    rounding to two decimals can cause (:data:`ROUNDING_TOL`)."""
    keys = ["table", "benchmark", "method", "metric"]
    per_set = df[df["ood_set"] != AVERAGE]
    means = per_set.groupby(keys, sort=False)["value"].agg(row_mean="mean", n_sets="count").reset_index()
    printed = df[df["ood_set"] == AVERAGE][keys + ["value"]].rename(columns={"value": "printed"})
    out = printed.merge(means, on=keys, how="inner")
    out["diff"] = out["printed"] - out["row_mean"]
    return out[out["diff"].abs() > tol].reset_index(drop=True)[[*keys, "printed", "row_mean", "diff", "n_sets"]]


def _copy_problems(df: pd.DataFrame) -> list[str]:
    """Table IV's baseline rows and its "ReAct+Ours" row against the averages of Tables I/III
    (the paper prints them twice; they must be the same numbers)."""
    problems = []
    for r in df[df["table"] == "table4"].itertuples():
        kind = method_kind(r.method)
        if kind == "posthoc":
            source_method = r.method
        elif kind == "ours" and scorer_name(r.method) == OURS_SCORER:
            source_method = "Ours"
        else:
            continue
        source = SOURCE_TABLE[r.benchmark]
        printed = lookup(df, source, r.benchmark, source_method, AVERAGE, r.metric)
        if printed is None:
            problems.append(f"table4 {r.benchmark} {r.method} {r.metric} = {r.value:.2f}: "
                            f"{source} prints no average for {source_method}")
        elif printed != r.value:
            problems.append(f"table4 {r.benchmark} {r.method} {r.metric} = {r.value:.2f}, but {source} "
                            f"{source_method} average = {printed:.2f}")
    return problems


_RANK_NAMES = {"bold": "the best", "underline": "the second best", "": "neither best nor second best"}


def _rank_mark_problems(df: pd.DataFrame) -> list[str]:
    """Tables II and III mark the best value of each column bold and the second best underlined.
    (The seed text carries no marks for Table I; Table IV marks pairs, see :func:`_pair_mark_problems`.)"""
    problems = []
    cols = ["table", "benchmark", "ood_set", "metric"]
    for (table, bench, ood, metric), col in df[df["table"].isin(("table2", "table3"))].groupby(cols, sort=False):
        ranked = sorted(set(col["value"]), reverse=(metric == "auroc"))
        expected = {ranked[0]: "bold", ranked[1]: "underline"}
        where = f"{table} {bench} {ood} {metric}"
        for r in col.itertuples():
            want = expected.get(r.value, "")
            if r.mark == want:
                continue
            rank = _RANK_NAMES[want]
            if r.mark:
                problems.append(f"{where}: {r.method} {r.value:.2f} is marked {r.mark} but is {rank}")
            else:
                problems.append(f"{where}: {r.method} {r.value:.2f} is {rank} but is not marked {want}")
    return problems


def _pair_mark_problems(df: pd.DataFrame) -> list[str]:
    """Table IV prints each scorer with and without LFF and marks the better cell of the pair bold."""
    problems = []
    t4 = df[df["table"] == "table4"]
    for r in t4[t4["method"].str.endswith("+Ours")].itertuples():
        base = r.method.removesuffix("+Ours")
        hit = t4[(t4["benchmark"] == r.benchmark) & (t4["method"] == base) & (t4["metric"] == r.metric)]
        if hit.empty:
            problems.append(f"table4 {r.benchmark} {r.metric}: {r.method} has no {base} row")
            continue
        base_value, base_mark = float(hit["value"].iloc[0]), hit["mark"].iloc[0]
        ours_better = r.value > base_value if r.metric == "auroc" else r.value < base_value
        expected = ("bold", "") if ours_better else ("", "bold")
        if (r.mark, base_mark) != expected:
            problems.append(f"table4 {r.benchmark} {r.metric}: {base} {base_value:.2f} vs {r.method} "
                            f"{r.value:.2f}: the better of the two, and only it, should be bold")
    return problems


def _text_claim_problems(df: pd.DataFrame) -> list[str]:
    """The gaps the text quotes (:data:`TEXT_CLAIMS`) against the tables' printed values. A gap
    worked out from unrounded values may differ from the printed ones' by 0.01, hence the tolerance."""
    problems = []
    for section, table, bench, baseline, metric, quoted in TEXT_CLAIMS:
        ours = lookup(df, table, bench, "Ours", AVERAGE, metric)
        other = lookup(df, table, bench, baseline, AVERAGE, metric)
        if ours is None or other is None:
            problems.append(f"section {section} compares Ours with {baseline} ({metric}) but {table} {bench} "
                            f"lacks one of the two averages")
            continue
        gap = abs(ours - other)
        if abs(gap - quoted) > ROUNDING_TOL:
            problems.append(f"section {section} says Ours beats {baseline} by {quoted:.2f} {metric} on {bench}; "
                            f"{table} gives |{ours:.2f} - {other:.2f}| = {gap:.2f}")
    return problems


def check(df: pd.DataFrame) -> list[str]:
    """Human-readable inconsistencies of the printed tables (empty when there are none): averages
    that are not their row's mean (beyond rounding), Table IV cells that differ from the Table I/III
    cells they repeat, bold/underline marks that do not match the ranking, and gaps quoted in the
    text that the tables do not give."""
    problems = [f"{r.table} {r.benchmark} {r.method} {r.metric}: printed average {r.printed:.2f}, "
                f"row mean {r.row_mean:.3f} (difference {r.diff:+.3f})" for r in average_problems(df).itertuples()]
    problems += _copy_problems(df)
    problems += _rank_mark_problems(df)
    problems += _pair_mark_problems(df)
    problems += _text_claim_problems(df)
    return problems


# ----------------------------------------------------------------------------- flagged cells, for the tables
#: How the notes name a table.
TABLE_NAMES = {"table1": "Table I", "table2": "Table II", "table3": "Table III", "table4": "Table IV"}


def source_row(table: str, benchmark: str, method: str) -> tuple[str, str] | None:
    """The printed row whose per-OOD-set values an Average cell of (``table``, ``benchmark``,
    ``method``) summarises: the row itself in Tables I and III; for Table IV's repeats the Table I/III
    row they copy (a post-hoc row: the same method; "ReAct+Ours": "Ours"); None where the paper prints
    no per-set values for it (Table II, Table IV's other "+Ours" rows)."""
    if table in PER_OOD_TABLES:
        return table, method
    if table == "table4" and benchmark in SOURCE_TABLE:
        try:
            kind = method_kind(method)
        except ValueError:
            return None
        if kind == "posthoc":
            return SOURCE_TABLE[benchmark], method
        if kind == "ours" and scorer_name(method) == OURS_SCORER:
            return SOURCE_TABLE[benchmark], "Ours"
    return None


def mean_of_row(df: pd.DataFrame, table: str, benchmark: str, method: str, metric: str) -> float | None:
    """The mean of the printed per-OOD-set values behind the Average cell of (``table``,
    ``benchmark``, ``method``, ``metric``) (:func:`source_row`); None when the paper prints none.
    A flagged average (``average_differs_from_row_mean``, ``copied_average_differs_from_row_mean``)
    differs from it beyond rounding."""
    src = source_row(table, benchmark, method)
    if src is None:
        return None
    hit = df[(df["table"] == src[0]) & (df["benchmark"] == benchmark) & (df["method"] == src[1])
             & (df["metric"] == metric) & (df["ood_set"] != AVERAGE)]
    return float(hit["value"].mean()) if len(hit) else None


def _3(x: float, signed: bool = False) -> str:
    """``x`` to three decimals, halves up: the means of printed cells are exact multiples of 1/400 or
    1/600 (90.3725 prints 90.373, as src/lffood/resources/paper/README.md gives it), which binary floats miss."""
    d = Decimal(repr(round(x, 9))).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    return f"{d:+}" if signed else f"{d}"


def flag_note(df: pd.DataFrame, table: str, benchmark: str, method: str, ood_set: str, metric: str) -> str:
    """One sentence per flag of a printed cell (joined by "; "), saying what is inconsistent and, for a
    flagged average, the mean of its row's printed per-OOD-set values; "" for an unflagged cell or
    one the paper does not print. ``src/lffood/resources/paper/README.md`` lists the flags."""
    hit = df[(df["table"] == table) & (df["benchmark"] == benchmark) & (df["method"] == method)
             & (df["ood_set"] == ood_set) & (df["metric"] == metric)]
    if hit.empty or not str(hit["flag"].iloc[0]):
        return ""
    value, notes = float(hit["value"].iloc[0]), []
    for flag in str(hit["flag"].iloc[0]).split(";"):
        if flag in ("average_differs_from_row_mean", "copied_average_differs_from_row_mean"):
            mean = mean_of_row(df, table, benchmark, method, metric)
            src = source_row(table, benchmark, method)
            if mean is None:
                notes.append(f"flagged {flag}")
                continue
            row = "its row" if src[0] == table else f"the {TABLE_NAMES[src[0]]} row it repeats ({src[1]})"
            notes.append(f"the paper prints {value:.2f}, but the mean of the printed per-OOD-set values of {row} is "
                         f"{_3(mean)} (printed − row mean {_3(value - mean, signed=True)}; rounding explains at "
                         f"most ±0.01)")
        elif flag == "underline_not_second_best":
            notes.append(f"the paper underlines {value:.2f} (second best), but it is not the second best of its "
                         f"column as printed")
        elif flag == "second_best_not_underlined":
            notes.append(f"{value:.2f} is the second best of its column as printed, but the paper does not "
                         f"underline it")
        elif flag == "text_quotes_different_gap":
            ours = lookup(df, table, benchmark, "Ours", AVERAGE, metric)
            for section, t, b, baseline, m, quoted in TEXT_CLAIMS:
                if (t, b, baseline, m) == (table, benchmark, method, metric) and ours is not None:
                    hi, lo = max(ours, value), min(ours, value)
                    notes.append(f"section {section} quotes a gap of {quoted:.2f} between Ours and this value; the "
                                 f"table's printed values give {hi:.2f} − {lo:.2f} = {hi - lo:.2f}")
                    break
            else:
                notes.append("the paper's text quotes a gap to this value that the table does not give")
        else:
            notes.append(f"flagged {flag}")
    return "; ".join(notes)
