"""Tables: mean and standard deviation over seeds per (model variant, scorer, OOD set) and on
the average over OOD sets (the average is taken per seed first, then summarised over seeds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..integrity import rebuild_hint, sealed_path, verify
from ..io import atomic_path
from ..metrics import HIGHER_IS_BETTER, METRICS, check_complete

METRIC_NAMES = {"fpr95": "FPR95↓", "auroc": "AUROC↑", "aupr_in": "AUPR-In↑", "aupr_out": "AUPR-Out↑"}
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
    for m in (*METRICS, "id_acc"):
        df[m] = 100.0 * df[m]
    return df


def with_average(tidy: pd.DataFrame, keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """Append, per (variant, scorer, seed), the mean over OOD sets as ood_set == 'average'."""
    avg = tidy.groupby([*keys, "seed"], as_index=False, sort=False)[[*METRICS, "id_acc"]].mean()
    avg["ood_set"] = AVERAGE
    return pd.concat([tidy, avg], ignore_index=True)


def seed_std(values) -> float:
    """Standard deviation over seeds (ddof=1), 0 for a single seed: the spread every table reports."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1)) if len(v) > 1 else 0.0


def mean_std(mean: float, std: float, digits: int = 1, signed: bool = False, pm: str = " ± ") -> str:
    """The one 'mean ± std' cell format of the tables (``signed``: differences, with their sign)."""
    return f"{mean:{'+' if signed else ''}.{digits}f}{pm}{std:.{digits}f}"


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


def summarize(tidy: pd.DataFrame, keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """Rows (variant, scorer, ood_set); columns <metric>_mean, <metric>_std (std over seeds, ddof=1), n_seeds."""
    full = with_average(tidy, keys)
    g = full.groupby([*keys, "ood_set"], sort=False)
    mean = g[[*METRICS, "id_acc"]].mean().add_suffix("_mean")
    std = g[[*METRICS, "id_acc"]].std(ddof=1).fillna(0.0).add_suffix("_std")
    out = pd.concat([mean, std], axis=1)
    out["n_seeds"] = g["seed"].nunique()
    return out.reset_index()


def wide(summary: pd.DataFrame, ood_order: Sequence[str]) -> pd.DataFrame:
    """One row per (variant, scorer); columns '<ood_set>/<metric>_mean|std' plus ID accuracy."""
    rows = []
    for (variant, scorer), grp in summary.groupby(KEYS, sort=False):
        row = {"variant": variant, "scorer": scorer}
        by_set = grp.set_index("ood_set")
        for s in [*ood_order, AVERAGE]:
            for m in METRICS:
                row[f"{s}/{m}_mean"] = round(float(by_set.loc[s, f"{m}_mean"]), 3)
                row[f"{s}/{m}_std"] = round(float(by_set.loc[s, f"{m}_std"]), 3)
        row["id_acc_mean"] = round(float(by_set.loc[AVERAGE, "id_acc_mean"]), 3)
        row["id_acc_std"] = round(float(by_set.loc[AVERAGE, "id_acc_std"]), 3)
        row["n_seeds"] = int(by_set.loc[AVERAGE, "n_seeds"])
        rows.append(row)
    return pd.DataFrame(rows)


def _order(df: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    """Rows grouped by scorer (alphabetically), variants in config order within each group."""
    vorder = {v: i for i, v in enumerate(variants)}
    return df.assign(_s=df["scorer"], _v=df["variant"].map(vorder)).sort_values(["_s", "_v"], kind="stable").drop(
        columns=["_s", "_v"])


def _scorer_rows(table: pd.DataFrame, column_sets: Sequence[str], metrics: Sequence[str], *, first,
                 labels: Mapping[str, str], last=lambda r: [],
                 watermark: str | None = None) -> list[tuple[list[str], list[str], bool]]:
    """The rows of a table grouped by scorer, as (cell texts, their marks, starts a scorer block):
    'mean ± std' cells ('–' when missing), the best mean of each column within a scorer's block
    marked bold. ``first(scorer, row)`` names the row; ``last(row)`` adds cells of numbers. Every
    cell of numbers carries the ``watermark`` (:func:`stamp`)."""
    out = []
    for scorer, grp in table.groupby("scorer", sort=False):
        best = {}
        for s in column_sets:
            for m in metrics:
                col = grp[f"{s}/{m}_mean"]
                best[(s, m)] = col.max() if HIGHER_IS_BETTER[m] else col.min()
        for i, (_, r) in enumerate(grp.iterrows()):
            cells, marks = [first(scorer, r), labels.get(r["variant"], r["variant"])], ["", ""]
            for s in column_sets:
                for m in metrics:
                    mean, std = r[f"{s}/{m}_mean"], r[f"{s}/{m}_std"]
                    cells.append("–" if pd.isna(mean) else stamp(mean_std(mean, std), watermark))
                    marks.append("bold" if pd.notna(mean) and np.isclose(mean, best[(s, m)]) and len(grp) > 1 else "")
            extra = [stamp(c, watermark) for c in last(r)]
            out.append((cells + extra, marks + [""] * len(extra), i == 0))
    return out


def _md_lines(rows) -> list[str]:
    return ["| " + " | ".join(f"**{c}**" if how == "bold" else c for c, how in zip(cells, marks)) + " |"
            for cells, marks, _ in rows]


def _latex(rows, header: Sequence[str], *, title: str, note: str, label: str) -> str:
    from . import latex

    body = [[latex.mark(latex.escape(c), how) for c, how in zip(cells, marks)] for cells, marks, _ in rows]
    breaks = [i for i, (_, _, start) in enumerate(rows) if start]
    return latex.tabular([[(h, 1) for h in header]], body, caption=f"{title}. {note}", label=label,
                         align="ll" + "c" * (len(header) - 2), midrules_before=breaks)


def _note(table: pd.DataFrame) -> str:
    return (f"Mean ± standard deviation over {int(table['n_seeds'].max())} seed(s); percentages. "
            "FPR95 with ID as the positive class. Bold: best mean per column within each scorer.")


def _header(sets: Sequence[str], metrics: Sequence[str]) -> list[str]:
    return ["Scorer", "Model"] + [f"{s} {METRIC_NAMES[m]}" for s in sets for m in metrics]


def markdown(table: pd.DataFrame, ood_order: Sequence[str], title: str, labels: Mapping[str, str],
             metrics=("fpr95", "auroc"), watermark: str | None = None) -> str:
    """Markdown with 'mean ± std' cells; the best mean of each column within a scorer is bold. The
    title and every cell of numbers carry the ``watermark``, if any."""
    sets = [*ood_order, AVERAGE]
    header = _header(sets, metrics) + ["ID acc↑"]
    lines = [f"# {stamp(title, watermark)}", "", _note(table), "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += _md_lines(_table_rows(table, sets, metrics, labels, watermark))
    return "\n".join(lines) + "\n"


def _table_rows(table, sets, metrics, labels, watermark=None):
    return _scorer_rows(table, sets, metrics, first=lambda scorer, r: scorer, labels=labels,
                        last=lambda r: [mean_std(r["id_acc_mean"], r["id_acc_std"])], watermark=watermark)


def to_latex(table: pd.DataFrame, ood_order: Sequence[str], title: str, labels: Mapping[str, str],
             metrics=("fpr95", "auroc"), label: str = "tab:results", watermark: str | None = None) -> str:
    """The same table as :func:`markdown`, as a LaTeX (booktabs) table."""
    sets = [*ood_order, AVERAGE]
    return _latex(_table_rows(table, sets, metrics, labels, watermark), _header(sets, metrics) + ["ID acc↑"],
                  title=stamp(title, watermark), note=_note(table), label=label)


def write_tables(metric_files: Sequence[str], *, csv: str, md: str, tex: str, tidy: str, title: str,
                 labels: Mapping[str, str], ood_order: Sequence[str] | None = None,
                 watermark: str | None = None) -> pd.DataFrame:
    """Write the tidy metrics, the wide CSV table and its Markdown and LaTeX renderings; OOD sets in
    ``ood_order`` (default: order of first appearance); ``labels``: variant -> how the table names it,
    in row order; ``watermark`` (config ``watermark``): stamped on every row of the CSVs, every cell
    of numbers and the title. Returns the CSV table."""
    data = collect(metric_files)
    ood_order = list(ood_order) if ood_order else list(dict.fromkeys(data["ood_set"]))
    table = watermarked(_order(wide(summarize(data), ood_order), list(labels)), watermark)
    with sealed_path(tidy, inputs=metric_files) as tmp:  # lffood results reads it: verified there
        watermarked(data, watermark).to_csv(tmp, index=False)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, ood_order, title, labels, watermark=watermark))
    with atomic_path(tex) as tmp:
        tmp.write_text(to_latex(table, ood_order, title, labels, watermark=watermark))
    return table


# ----------------------------------------------------------------------------- Table IV shape
def scorer_label(name: str) -> str:
    from ..scorers import registered_scorers

    cls = registered_scorers().get(name)
    return cls.label if cls is not None else name


def scorer_table(tidy: pd.DataFrame, *, ood_order: Sequence[str] | None = None, scorers: Sequence[str] | None = None,
                 variants: Sequence[str] | None = None, metrics: Sequence[str] = ("auroc", "fpr95"),
                 by_benchmark: bool = False) -> pd.DataFrame:
    """The paper's Table IV shape: one row per (scorer, model variant), columns
    ``<ood_set>/<metric>_mean|std`` per OOD set and ``average/...`` (mean over OOD sets per seed, then
    over seeds), plus ID accuracy and the number of seeds.

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
    data = data[data["scorer"].isin(scorers) & data["variant"].isin(variants)]
    summary = summarize(data, ["benchmark", *KEYS])
    sets = list(ood_order) if ood_order is not None else [*dict.fromkeys(data["ood_set"]), AVERAGE]
    idx = summary.set_index(["benchmark", "variant", "scorer", "ood_set"])
    rows = []
    for scorer in scorers:
        for variant in variants:
            if not ((summary["scorer"] == scorer) & (summary["variant"] == variant)).any():
                continue
            row = {"scorer": scorer, "label": scorer_label(scorer), "variant": variant}
            n_seeds = 0
            for b in benches:
                prefix = f"{b}/" if by_benchmark else ""
                for s in sets:
                    key = (b, variant, scorer, s)
                    for m in metrics:
                        for stat in ("mean", "std"):
                            row[f"{prefix}{s}/{m}_{stat}"] = (round(float(idx.loc[key, f"{m}_{stat}"]), 3)
                                                              if key in idx.index else np.nan)
                avg = (b, variant, scorer, AVERAGE)
                if avg in idx.index:
                    row[f"{prefix}id_acc_mean"] = round(float(idx.loc[avg, "id_acc_mean"]), 3)
                    row[f"{prefix}id_acc_std"] = round(float(idx.loc[avg, "id_acc_std"]), 3)
                    n_seeds = max(n_seeds, int(idx.loc[avg, "n_seeds"]))
            row["n_seeds"] = n_seeds
            rows.append(row)
    return pd.DataFrame(rows)


def _scorer_parts(table: pd.DataFrame, labels, column_sets, metrics, watermark=None):
    if column_sets is None:
        column_sets = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in table.columns
                                         if c.endswith(f"/{metrics[0]}_mean")))
    note = (f"Mean ± standard deviation over {int(table['n_seeds'].max())} seed(s); percentages. Rows: each "
            f"scorer on every model it applies to ({', '.join(labels.values())}). FPR95 with ID as the positive "
            "class. Bold: best mean per column within each scorer.")
    rows = _scorer_rows(table, column_sets, metrics, first=lambda scorer, r: str(r["label"]), labels=labels,
                        watermark=watermark)
    return _header(column_sets, metrics), note, rows


def scorer_markdown(table: pd.DataFrame, title: str, *, labels: Mapping[str, str],
                    column_sets: Sequence[str] | None = None, metrics: Sequence[str] = ("auroc", "fpr95"),
                    watermark: str | None = None) -> str:
    """Markdown of :func:`scorer_table`: 'mean ± std' cells, one block of rows per scorer, the best
    mean of each column within a scorer in bold. ``column_sets``: the column prefixes (default: those of
    the table, e.g. ``['backgrounds', ..., 'average']`` or ``['cifar10/average', ...]``). The title and
    every cell of numbers carry the ``watermark``, if any."""
    header, note, rows = _scorer_parts(table, labels, column_sets, metrics, watermark)
    lines = [f"# {stamp(title, watermark)}", "", note, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + _md_lines(rows)) + "\n"


def scorer_latex(table: pd.DataFrame, title: str, *, labels: Mapping[str, str],
                 column_sets: Sequence[str] | None = None, metrics: Sequence[str] = ("auroc", "fpr95"),
                 watermark: str | None = None) -> str:
    """:func:`scorer_markdown` as a LaTeX (booktabs) table."""
    header, note, rows = _scorer_parts(table, labels, column_sets, metrics, watermark)
    return _latex(rows, header, title=stamp(title, watermark), note=note, label="tab:scorers")


def write_scorer_table(metric_files: Sequence[str], *, csv: str, md: str, tex: str, title: str,
                       labels: Mapping[str, str], ood_order: Sequence[str] | None = None,
                       scorers: Sequence[str] | None = None, watermark: str | None = None) -> pd.DataFrame:
    """Table IV shape for one benchmark from its per-model metric files: CSV, Markdown and LaTeX;
    ``labels``: variant -> name, in row order; ``watermark``: as :func:`write_tables`."""
    data = collect(metric_files)
    sets = [*(ood_order or dict.fromkeys(data["ood_set"])), AVERAGE]
    table = watermarked(scorer_table(data, ood_order=sets, scorers=scorers, variants=list(labels)), watermark)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(scorer_markdown(table, title, labels=labels, watermark=watermark))
    with atomic_path(tex) as tmp:
        tmp.write_text(scorer_latex(table, title, labels=labels, watermark=watermark))
    return table
