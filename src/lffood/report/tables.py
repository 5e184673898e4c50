"""The result tables of one benchmark, and the one cell format of every table.

Which table to read (docs/tables.md):

* ``results/tables/<bench>`` is the **primary table**: every method (model variant, config order)
  with its own scorer (``variants.<v>.scorer``), FPR95, AUROC, AUPR-In and AUPR-Out per OOD set and
  on average, and ID accuracy (:func:`write_tables`);
* ``<bench>_scorers`` is **secondary**: every scorer on every model it applies to, FPR95 and AUROC
  (its CSV has all four metrics; :func:`write_scorer_table`);
* ``<bench>_table1`` / ``_table4`` and the paper benchmarks' ``table1`` ... ``table4`` are the paper's
  layouts (:mod:`.paper_tables`).

Every number is in percent. The average over OOD sets is taken per seed first, then summarised over
seeds. Every formatted cell (Markdown, LaTeX, HTML) is ``mean ± spread`` with :data:`DIGITS` decimals
(:func:`mean_std`), the metrics in :data:`COLUMNS` order, methods and scorers under their registry
labels. The spread is the half-width of the 95% interval of :func:`lffood.stats.cell` (the
seeds' spread and the test set's bootstrap standard error combined) where the metrics files carry
standard errors (``<metric>_se``), else the standard deviation over seeds; the note under each
table says which (:func:`spread_note`). The CSVs keep full precision and both spreads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..integrity import rebuild_hint, sealed_path, verify
from ..io import atomic_path
from ..metrics import HIGHER_IS_BETTER, METRICS, check_complete

METRIC_NAMES = {"fpr95": "FPR95↓", "auroc": "AUROC↑", "aupr_in": "AUPR-In↑", "aupr_out": "AUPR-Out↑"}
#: The one metric order of every table's columns: the paper's (FPR95, then AUROC), then the AUPRs.
COLUMNS = ("fpr95", "auroc", "aupr_in", "aupr_out")
#: Decimals of every formatted cell (percent). One decimal: the embedded benchmark's AUROC has a
#: test-set standard error of about 0.6 points and a seed spread of the same order; a second decimal is noise.
DIGITS = 1
#: The interval's level; the workflow passes config ``stats.level`` where it has one.
LEVEL = 0.95
#: A CSV column's suffix for the half-width of the interval (``<set>/<metric>_ci_hw``).
HALF_WIDTH = "_ci_hw"
#: A variant's own scorer when none is named: the config schema's default of ``variants.<v>.scorer``.
DEFAULT_SCORER = "react"
AVERAGE = "average"
KEYS = ["variant", "scorer"]


def read_metrics(path: str) -> pd.DataFrame:
    """One model's metrics file, verified: its bytes and inputs against its integrity manifest
    (lffood.integrity) and its rows against those the manifest says it holds (every scorer x OOD set)."""
    rows = verify(path).get("rows")
    df = pd.read_csv(path)
    if rows:
        labels = rows.get("labels", {})
        check_complete(df, path, benchmark=labels.get("benchmark"),
                       seeds=[labels["seed"]] if "seed" in labels else None,
                       scorers={labels["variant"]: rows["scorers"]} if "variant" in labels else rows["scorers"],
                       ood_sets=rows["ood_sets"], hint=rebuild_hint(path))
    return df


def collect(metric_files: Sequence[str]) -> pd.DataFrame:
    """The rows of ``metric_files`` (:func:`read_metrics`), metrics in percent, checked complete
    together: every variant with every seed, scorer and OOD set that the others have."""
    frames = [read_metrics(f) for f in metric_files]
    df = pd.concat(frames, ignore_index=True)
    if metric_files:
        files = list(metric_files)
        check_complete(df, f"the metrics files {files[0]} ... {files[-1]} ({len(files)} files)" if len(files) > 2
                       else f"the metrics files {files}",
                       hint="Rebuild the metrics of the model(s) named (snakemake --force <its metrics file>), "
                            "then rerun the workflow.")
    for m in (*METRICS, "id_acc", *(f"{v}_se" for v in (*METRICS, "id_acc") if f"{v}_se" in df)):
        df[m] = 100.0 * df[m]
    return df


def _se_values(tidy: pd.DataFrame) -> list[str]:
    """The values (metrics, ``id_acc``) whose test-set standard error ``<value>_se`` every row of
    ``tidy`` carries. A file without them (written before the bootstrap, :mod:`lffood.stats`) among
    files with them leaves that value's spread at the seeds' standard deviation for the whole table,
    so that one column never mixes two kinds of spread."""
    return [v for v in (*METRICS, "id_acc") if f"{v}_se" in tidy.columns and tidy[f"{v}_se"].notna().all()]


def complete_se(*tidy: pd.DataFrame) -> list[pd.DataFrame]:
    """``tidy`` (one or several benchmarks' rows) without the standard-error columns that not all of
    them carry on every row (:func:`_se_values`): the tables built from them then show one kind of
    spread per metric throughout."""
    keep = set.intersection(*(set(_se_values(t)) for t in tidy)) if tidy else set()
    return [t.drop(columns=[c for c in t.columns if c.endswith("_se") and c.removesuffix("_se") not in keep])
            for t in tidy]


def with_average(tidy: pd.DataFrame, keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """Append, per (variant, scorer, seed), the mean over OOD sets as ood_set == 'average'.

    A standard error ``<value>_se`` is averaged the same way. The mean of the per-set standard
    errors bounds the average's from above: the OOD sets share the ID test images, so their errors are
    correlated, and the standard deviation of a sum is at most the sum of the standard deviations
    (:func:`lffood.stats.average_se`). The bound is conservative, as :func:`lffood.stats.cell`'s is."""
    values = [*METRICS, "id_acc", *(f"{v}_se" for v in _se_values(tidy))]
    avg = tidy.groupby([*keys, "seed"], as_index=False, sort=False)[values].mean()
    avg["ood_set"] = AVERAGE
    return pd.concat([tidy, avg], ignore_index=True)


def seed_std(values) -> float:
    """Standard deviation over seeds (ddof=1), 0 for a single seed: the spread every table reports."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0


def half_width(means, ses, level: float = LEVEL) -> float:
    """The half-width of the ``level`` interval of one cell from its per-seed values ``means`` and
    their test-set standard errors ``ses``: :func:`lffood.stats.cell`, the one rule that
    combines seeds and test set (docs/statistics.md)."""
    from ..stats import cell as cell_interval

    return cell_interval(np.asarray(means, dtype=float), np.asarray(ses, dtype=float), level).half_width


def number(value: float, digits: int = DIGITS, signed: bool = False) -> str:
    """A number as every table prints it: :data:`DIGITS` decimals (``signed``: a difference, with its sign)."""
    return f"{value:{'+' if signed else ''}.{digits}f}"


def mean_std(mean: float, std: float, digits: int = DIGITS, signed: bool = False, pm: str = " ± ") -> str:
    """The one 'mean ± spread' cell format of the tables (``signed``: differences, with their sign)."""
    return f"{number(mean, digits, signed)}{pm}{number(std, digits)}"


def stamp(text: str, watermark: str | None) -> str:
    """``text`` marked with config ``watermark`` ('WATERMARK: text'), or ``text`` itself when there is
    none: the one stamp of every reproduced table cell, table title and figure heading."""
    return f"{watermark}: {text}" if watermark else text


def watermarked(table: pd.DataFrame, watermark: str | None, reproduced=None) -> pd.DataFrame:
    """``table`` with a first column ``watermark`` that holds config ``watermark`` on the ``reproduced``
    rows (a boolean mask; default: every row) and is empty on the others; ``table`` itself when there
    is no watermark. The numeric columns stay as they are."""
    if not watermark:
        return table
    mask = np.ones(len(table), bool) if reproduced is None else np.asarray(reproduced, bool)
    return table.assign(watermark=np.where(mask, watermark, ""))[["watermark", *table.columns]]


def watermark_of(table: pd.DataFrame) -> str | None:
    """The watermark that a table read back from a CSV of :func:`watermarked` carries, or None."""
    marks = table["watermark"].dropna().astype(str) if "watermark" in table else pd.Series(dtype=str)
    marks = marks[marks != ""]
    return marks.iloc[0] if len(marks) else None


def summarize(tidy: pd.DataFrame, keys: Sequence[str] = KEYS, level: float = LEVEL) -> pd.DataFrame:
    """Rows (keys, ood_set) with the average over OOD sets (:func:`with_average`); per value (each metric
    and ``id_acc``) columns ``<value>_mean``, ``<value>_std`` (over seeds, ddof=1; 0 for one seed) and,
    where the metrics carry test-set standard errors, ``<value>_ci_hw`` (:func:`half_width`); n_seeds."""
    full = with_average(tidy, keys)
    values = [*METRICS, "id_acc"]
    g = full.groupby([*keys, "ood_set"], sort=False)
    parts = [g[values].mean().add_suffix("_mean"), g[values].std(ddof=1).fillna(0.0).add_suffix("_std")]
    with_se = _se_values(full)
    if with_se:
        recs = [{**dict(zip([*keys, "ood_set"], name)),
                 **{f"{v}{HALF_WIDTH}": half_width(grp[v], grp[f"{v}_se"], level) for v in with_se}}
                for name, grp in g]
        parts.append(pd.DataFrame(recs).set_index([*keys, "ood_set"]))
    out = pd.concat(parts, axis=1)
    out["n_seeds"] = g["seed"].nunique()
    return out.reset_index()


def scorer_label(name: str) -> str:
    """A scorer's one label, the registry's (:mod:`lffood.scorers`); the name itself for an unknown one."""
    from ..scorers import registered_scorers

    cls = registered_scorers().get(name)
    return cls.label if cls is not None else name


# ----------------------------------------------------------------------------- the wide CSV tables
def scorer_table(tidy: pd.DataFrame, *, ood_order: Sequence[str] | None = None, scorers: Sequence[str] | None = None,
                 variants: Sequence[str] | None = None, metrics: Sequence[str] = COLUMNS,
                 by_benchmark: bool = False, labels: Mapping[str, str] | None = None,
                 level: float = LEVEL) -> pd.DataFrame:
    """One row per (scorer, model variant): columns ``scorer``, ``scorer_label``, ``variant``,
    ``method`` (``labels[variant]``), then ``<ood_set>/<metric>_mean|_std`` (and ``_ci_hw`` where the
    metrics carry standard errors, :func:`summarize`) per OOD set and ``average`` (mean over OOD sets per
    seed, then over seeds), ID accuracy and the number of seeds. Full precision.

    ``tidy``: rows of metric files (:func:`collect`; percentages), any number of benchmarks. With
    ``by_benchmark`` the columns are ``<benchmark>/<ood_set>/<metric>_...`` (one block per benchmark,
    e.g. the paper's CIFAR-10 / CIFAR-100 / ImageNet columns with ``ood_order=['average']``);
    otherwise ``tidy`` must hold one benchmark. ``ood_order`` selects and orders the sets
    (default: first appearance, then ``average``; name ``average`` yourself to place or keep only it).
    Rows: ``scorers`` order (default: first appearance), then ``variants`` order (default: first
    appearance); a (scorer, variant) without metrics (a scorer that does not apply) has no row.
    """
    benches = list(dict.fromkeys(tidy["benchmark"])) if "benchmark" in tidy else ["-"]
    if len(benches) > 1 and not by_benchmark:
        raise ValueError(f"metrics of several benchmarks {benches}: pass by_benchmark=True")
    data = tidy if "benchmark" in tidy else tidy.assign(benchmark="-")
    scorers = list(scorers) if scorers is not None else list(dict.fromkeys(data["scorer"]))
    variants = list(variants) if variants is not None else list(dict.fromkeys(data["variant"]))
    labels = labels or {}
    data = data[data["scorer"].isin(scorers) & data["variant"].isin(variants)]
    summary = summarize(data, ["benchmark", *KEYS], level)
    sets = list(ood_order) if ood_order is not None else [*dict.fromkeys(data["ood_set"]), AVERAGE]
    stats = [s for s in ("_mean", "_std", HALF_WIDTH) if f"auroc{s}" in summary.columns]
    idx = summary.set_index(["benchmark", "variant", "scorer", "ood_set"])
    present = set(zip(summary["scorer"], summary["variant"]))
    rows = []
    for scorer in scorers:
        for variant in variants:
            if (scorer, variant) not in present:
                continue
            row = {"scorer": scorer, "scorer_label": scorer_label(scorer), "variant": variant,
                   "method": labels.get(variant, variant)}
            n_seeds = 0
            for b in benches:
                prefix = f"{b}/" if by_benchmark else ""
                for s in sets:
                    key = (b, variant, scorer, s)
                    for m in metrics:
                        for stat in stats:
                            row[f"{prefix}{s}/{m}{stat}"] = float(idx.loc[key, f"{m}{stat}"]) if key in idx.index \
                                else np.nan
                avg = (b, variant, scorer, AVERAGE)
                if avg in idx.index:
                    for stat in stats:
                        if f"id_acc{stat}" in idx.columns:
                            row[f"{prefix}id_acc{stat}"] = float(idx.loc[avg, f"id_acc{stat}"])
                    n_seeds = max(n_seeds, int(idx.loc[avg, "n_seeds"]))
            row["n_seeds"] = n_seeds
            rows.append(row)
    return pd.DataFrame(rows)


def method_table(tidy: pd.DataFrame, methods: Mapping[str, Sequence[str]], ood_order: Sequence[str] | None = None,
                 level: float = LEVEL) -> pd.DataFrame:
    """The primary table's CSV: one row per method, ``methods``: variant -> (label, its own scorer) in
    row order (config order). Columns ``variant``, ``method``, ``scorer``, ``scorer_label``, then every
    metric (:data:`COLUMNS`) per OOD set (``ood_order``; default first appearance) and on average,
    ID accuracy and ``n_seeds`` (as :func:`scorer_table`)."""
    from ..errors import ConfigError

    sets = [*(ood_order or dict.fromkeys(tidy["ood_set"])), AVERAGE]
    (tidy,) = complete_se(tidy)  # decided for the whole table, not per method
    rows = []
    for variant, (label, scorer) in methods.items():
        part = tidy[(tidy["variant"] == variant) & (tidy["scorer"] == scorer)]
        if part.empty:
            raise ConfigError(f"no metrics of variant '{variant}' with its own scorer '{scorer}' (key "
                              f"variants.{variant}.scorer); the scorer must run on that variant")
        rows.append(scorer_table(part, ood_order=sets, labels={variant: label}, level=level).iloc[0])
    table = pd.DataFrame(rows).reset_index(drop=True)
    first = ["variant", "method", "scorer", "scorer_label"]
    return table[first + [c for c in table.columns if c not in first]]


# ----------------------------------------------------------------------------- the one cell format
def cell_spread(r: Mapping, key: str) -> float:
    """The spread shown beside the mean of column ``key`` (e.g. ``average/auroc``) of row ``r``: the
    interval's half-width where the table has one (``<key>_ci_hw``), else the std over seeds."""
    hw = r.get(f"{key}{HALF_WIDTH}")
    return hw if hw is not None and pd.notna(hw) else r.get(f"{key}_std")


def cell(r: Mapping, key: str, watermark: str | None = None) -> str:
    """The one cell of every formatted table: ``mean ± spread`` of column ``key`` of row ``r``
    (:func:`mean_std`, :func:`cell_spread`), '–' without a mean, stamped with the ``watermark``."""
    mean = r.get(f"{key}_mean")
    if mean is None or pd.isna(mean):
        return "–"
    return stamp(mean_std(mean, cell_spread(r, key)), watermark)


def _has_interval(table: pd.DataFrame, value: str) -> bool:
    return any(c.rsplit("/", 1)[-1] == f"{value}{HALF_WIDTH}" for c in table.columns)


def spread_note(table: pd.DataFrame, level: float = LEVEL, id_acc: bool = False) -> str:
    """The one line under a table that says what its cells are: which spread, over how many seeds,
    the unit and the decimals (``id_acc``: the table shows ID accuracy)."""
    n = int(table["n_seeds"].max()) if "n_seeds" in table and len(table) else 0
    seeds = f"{n} seed{'' if n == 1 else 's'}"
    if _has_interval(table, "auroc"):
        if n > 1:
            text = (f"Cells: mean over {seeds} ± half-width of its {level:.0%} interval (the spread between seeds and "
                    "the test set's bootstrap standard error combined; docs/statistics.md)")
        else:
            text = (f"Cells: mean ± half-width of the {level:.0%} interval over the test set only (one seed: the "
                    "spread between seeds is unknown; docs/statistics.md)")
        if id_acc and not _has_interval(table, "id_acc"):
            text += f"; ID acc: ± standard deviation over {seeds}"
    else:
        text = (f"Cells: mean ± standard deviation over {seeds} (these metrics carry no test-set standard errors: "
                "the test set's own uncertainty is not included)")
    return f"{text}. Percentages, {DIGITS} decimal{'' if DIGITS == 1 else 's'}; FPR95 with ID as the positive class."


def best_marks(means: pd.Series, metric: str) -> list[str]:
    """'bold' on the best mean of a column (FPR95: the lowest; ties share it), '' elsewhere; no mark in a
    column of one row."""
    vals = means.dropna()
    if len(means) < 2 or vals.empty:
        return [""] * len(means)
    best = vals.max() if HIGHER_IS_BETTER[metric] else vals.min()
    return ["bold" if pd.notna(v) and np.isclose(v, best) else "" for v in means]


# ----------------------------------------------------------------------------- rendering
class _Grid(NamedTuple):
    """A formatted table before it is Markdown or LaTeX: both are written from the same grid."""

    header: list[str]
    rows: list[tuple[list[str], list[str], bool]]  # (cell texts, their marks, starts a block)
    names: int  # leading columns of names (left-aligned, never stamped); the others hold numbers
    dropped: tuple[str, ...] = ()  # "<header> <text>" of the name columns left out (:func:`_without_constant`)


def _without_constant(grid: _Grid, candidates: Sequence[int]) -> _Grid:
    """``grid`` without the name columns (of ``candidates``) that hold the same text on every row: they
    carry no information; the note says what they held (:attr:`_Grid.dropped`)."""
    drop = [j for j in candidates if len(grid.rows) > 1 and len({cells[j] for cells, _, _ in grid.rows}) == 1]
    if not drop:
        return grid
    keep = [j for j in range(len(grid.header)) if j not in drop]
    rows = [([cells[j] for j in keep], [marks[j] for j in keep], start) for cells, marks, start in grid.rows]
    dropped = [f"{grid.header[j]} {grid.rows[0][0][j]}" for j in drop]
    return _Grid([grid.header[j] for j in keep], rows, grid.names - len(drop), (*grid.dropped, *dropped))


def _dropped_note(grid: _Grid) -> list[str]:
    return [f"Every row: {'; '.join(grid.dropped)}."] if grid.dropped else []


def _markdown(grid: _Grid, title: str, notes: Sequence[str], watermark: str | None) -> str:
    lines = [f"# {stamp(title, watermark)}", ""]
    for note in [*notes, *_dropped_note(grid)]:
        lines += [note, ""]
    lines += ["| " + " | ".join(grid.header) + " |", "|" + "---|" * len(grid.header)]
    lines += ["| " + " | ".join(f"**{c}**" if how == "bold" else c for c, how in zip(cells, marks)) + " |"
              for cells, marks, _ in grid.rows]
    return "\n".join(lines) + "\n"


def _latex(grid: _Grid, title: str, notes: Sequence[str], label: str, watermark: str | None) -> str:
    from . import latex

    body = [[latex.mark(latex.escape(c), how) for c, how in zip(cells, marks)] for cells, marks, _ in grid.rows]
    breaks = [i for i, (_, _, start) in enumerate(grid.rows) if start]
    caption = " ".join([f"{stamp(title, watermark)}.", *notes, *_dropped_note(grid)])
    return latex.tabular([[(h, 1) for h in grid.header]], body, caption=caption, label=label,
                         align="l" * grid.names + "c" * (len(grid.header) - grid.names), midrules_before=breaks)


# ----------------------------------------------------------------------------- the primary table
def _method_grid(table: pd.DataFrame, sets: Sequence[str], watermark: str | None) -> _Grid:
    """One block of rows per OOD set (then the average), one row per method in it; the best mean of
    each metric column within a block in bold."""
    header = ["OOD set", "Method", "Scorer", *(METRIC_NAMES[m] for m in COLUMNS), "ID acc↑"]
    rows = []
    for s in sets:
        marks = {m: best_marks(table[f"{s}/{m}_mean"], m) for m in COLUMNS}
        for i, (_, r) in enumerate(table.iterrows()):
            cells = [s, str(r["method"]), str(r["scorer_label"]),
                     *(cell(r, f"{s}/{m}", watermark) for m in COLUMNS), cell(r, "id_acc", watermark)]
            rows.append((cells, ["", "", "", *(marks[m][i] for m in COLUMNS), ""], i == 0))
    return _without_constant(_Grid(header, rows, 3), candidates=[1, 2])


def _method_notes(table: pd.DataFrame, bench: str, level: float) -> list[str]:
    return [spread_note(table, level, id_acc=True),
            "Primary table: each method (model variant, config order) with its own scorer (variants.<v>.scorer); one "
            "block per OOD set, then the average over the sets (per seed first). Bold: the best mean of each column "
            f"within a block. Secondary: {bench}_scorers (every scorer on every model), {bench}_table1 and "
            f"{bench}_table4 (the paper's layouts)."]


def markdown(table: pd.DataFrame, ood_order: Sequence[str], title: str, *, bench: str = "<bench>",
             level: float = LEVEL, watermark: str | None = None) -> str:
    """The primary table (:func:`method_table`) as Markdown: one line saying what the cells are, one
    saying what the table is, then the table. The title and every cell of numbers carry the
    ``watermark``, if any."""
    grid = _method_grid(table, [*ood_order, AVERAGE], watermark)
    return _markdown(grid, title, _method_notes(table, bench, level), watermark)


def to_latex(table: pd.DataFrame, ood_order: Sequence[str], title: str, *, bench: str = "<bench>",
             level: float = LEVEL, label: str = "tab:results", watermark: str | None = None) -> str:
    """The same table as :func:`markdown`, as a LaTeX (booktabs) table; a rule between the blocks."""
    grid = _method_grid(table, [*ood_order, AVERAGE], watermark)
    return _latex(grid, title, _method_notes(table, bench, level), label, watermark)


def write_tables(metric_files: Sequence[str], *, csv: str, md: str, tex: str, tidy: str, title: str,
                 labels: Mapping[str, str], scorers: Mapping[str, str] | None = None,
                 ood_order: Sequence[str] | None = None, watermark: str | None = None,
                 level: float = LEVEL) -> pd.DataFrame:
    """Write the tidy metrics and the benchmark's primary table (:func:`method_table`): its CSV, Markdown
    and LaTeX. ``labels``: variant -> how the table names it, in row order; ``scorers``: variant -> its
    own scorer (config ``variants.<v>.scorer``; default :data:`DEFAULT_SCORER`); OOD sets in
    ``ood_order`` (default: order of first appearance); ``level``: the intervals' (config
    ``stats.level``); ``watermark`` (config ``watermark``): stamped on every row of the CSVs, every
    cell of numbers and the title. Returns the CSV table."""
    data = collect(metric_files)
    ood_order = list(ood_order) if ood_order else list(dict.fromkeys(data["ood_set"]))
    methods = {v: (label, (scorers or {}).get(v, DEFAULT_SCORER)) for v, label in labels.items()}
    table = method_table(data, methods, ood_order, level)
    bench = str(data["benchmark"].iloc[0]) if "benchmark" in data and len(data) else "<bench>"
    with sealed_path(tidy, inputs=metric_files) as tmp:  # lffood results reads it: verified there
        watermarked(data, watermark).to_csv(tmp, index=False)
    with atomic_path(csv) as tmp:
        watermarked(table, watermark).to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, ood_order, title, bench=bench, level=level, watermark=watermark))
    with atomic_path(tex) as tmp:
        tmp.write_text(to_latex(table, ood_order, title, bench=bench, level=level, watermark=watermark))
    return watermarked(table, watermark)


# ----------------------------------------------------------------------------- every scorer on every model
#: The metrics the scorer table formats (its CSV has all of :data:`COLUMNS`): two, so that its
#: (OOD sets + 1) x 2 columns stay readable.
SCORER_COLUMNS = ("fpr95", "auroc")


def _scorer_grid(table: pd.DataFrame, column_sets: Sequence[str], metrics: Sequence[str],
                 watermark: str | None) -> _Grid:
    """One block of rows per scorer, one row per model it applies to; the best mean of each column
    within a block in bold."""
    header = ["Scorer", "Model", *(f"{s} {METRIC_NAMES[m]}" for s in column_sets for m in metrics)]
    rows = []
    for _, grp in table.groupby("scorer", sort=False):
        marks = {(s, m): best_marks(grp[f"{s}/{m}_mean"], m) for s in column_sets for m in metrics}
        for i, (_, r) in enumerate(grp.iterrows()):
            cells = [str(r["scorer_label"]), str(r["method"]),
                     *(cell(r, f"{s}/{m}", watermark) for s in column_sets for m in metrics)]
            rows.append((cells, ["", "", *(marks[(s, m)][i] for s in column_sets for m in metrics)], i == 0))
    return _without_constant(_Grid(header, rows, 2), candidates=[0, 1])


def _scorer_parts(table: pd.DataFrame, column_sets, metrics, watermark, level, bench):
    if column_sets is None:
        column_sets = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in table.columns
                                         if c.endswith(f"/{metrics[0]}_mean")))
    notes = [spread_note(table, level),
             f"Secondary table: each scorer (registry order) on every model it applies to "
             f"({', '.join(dict.fromkeys(table['method']))}). Bold: the best mean of each column within a scorer. "
             f"The primary table ({bench}) shows each method with its own scorer and all four metrics; this table's "
             "CSV has AUPR-In and AUPR-Out too."]
    return _scorer_grid(table, column_sets, metrics, watermark), notes


def scorer_markdown(table: pd.DataFrame, title: str, *, column_sets: Sequence[str] | None = None,
                    metrics: Sequence[str] = SCORER_COLUMNS, watermark: str | None = None, level: float = LEVEL,
                    bench: str = "<bench>") -> str:
    """Markdown of :func:`scorer_table`: one block of rows per scorer, the best mean of each column
    within a scorer in bold. ``column_sets``: the column prefixes (default: those of the table, e.g.
    ``['backgrounds', ..., 'average']`` or ``['cifar10/average', ...]``). The title and every cell of
    numbers carry the ``watermark``, if any."""
    grid, notes = _scorer_parts(table, column_sets, metrics, watermark, level, bench)
    return _markdown(grid, title, notes, watermark)


def scorer_latex(table: pd.DataFrame, title: str, *, column_sets: Sequence[str] | None = None,
                 metrics: Sequence[str] = SCORER_COLUMNS, watermark: str | None = None, level: float = LEVEL,
                 bench: str = "<bench>") -> str:
    """:func:`scorer_markdown` as a LaTeX (booktabs) table."""
    grid, notes = _scorer_parts(table, column_sets, metrics, watermark, level, bench)
    return _latex(grid, title, notes, "tab:scorers", watermark)


def write_scorer_table(metric_files: Sequence[str], *, csv: str, md: str, tex: str, title: str,
                       labels: Mapping[str, str], ood_order: Sequence[str] | None = None,
                       scorers: Sequence[str] | None = None, watermark: str | None = None,
                       level: float = LEVEL) -> pd.DataFrame:
    """The secondary table of one benchmark from its per-model metric files: every scorer (``scorers``
    order) on every model (``labels``: variant -> name, in row order). CSV with every metric, Markdown
    and LaTeX with :data:`SCORER_COLUMNS`; ``level``, ``watermark``: as :func:`write_tables`."""
    data = collect(metric_files)
    sets = [*(ood_order or dict.fromkeys(data["ood_set"])), AVERAGE]
    table = scorer_table(data, ood_order=sets, scorers=scorers, variants=list(labels), labels=labels, level=level)
    bench = str(data["benchmark"].iloc[0]) if "benchmark" in data and len(data) else "<bench>"
    with atomic_path(csv) as tmp:
        watermarked(table, watermark).to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(scorer_markdown(table, title, watermark=watermark, level=level, bench=bench))
    with atomic_path(tex) as tmp:
        tmp.write_text(scorer_latex(table, title, watermark=watermark, level=level, bench=bench))
    return watermarked(table, watermark)
