"""The paper's Tables I-IV, reproduced and side by side with the paper's printed numbers
(``results/tables/tableN.{csv,md,tex}``), and the same table shapes for any one benchmark without
the paper column (``results/tables/<bench>_table1``, ``<bench>_table4``).

Rows follow the paper's printed order (``resources/paper/lff_tables.csv``, :mod:`.paper_numbers`)
and come from the configuration: each printed post-hoc method is that scorer on the ``baseline``
variant (the paper's CE model); "Ours" is the ``ours`` variant with its own scorer (LFF with the
energy score and ReAct); a printed training method that a variant reproduces (matched by its label:
LogitNorm) is that variant with its scorer; the other printed training methods (CSI, SSD+, VOS,
NPOS, CIDER, TagFog) are shown as **paper-reported** rows. Rows the paper lacks are added and
marked: KNN (after ViM), and before "Ours" the CE control (fine-tuned with LFF's schedule and the CE
objective, which separates LFF's gain from the gain of training longer) and every other variant
(SSOD, MODE-F). Table IV pairs each of its scorers on the baseline, the control and ours.

Every reproduced cell is the mean and standard deviation over seeds (per-seed average over OOD sets
first), in percent; beside it the paper's value and the difference (reproduced - paper). Marks:
among the reproduced rows of a column the best mean is bold and the second underlined (FPR95: lowest
best); the paper's values keep the paper's own bold/underline. A watermark (config ``watermark``)
marks what was reproduced, never the paper's numbers: the reproduced rows of the CSV, the cells'
reproduced values (their difference to the paper follows them) and the title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..io import atomic_path
from . import latex
from .paper_numbers import POSTHOC_SCORERS, TRAINING_METHODS
from .tables import AVERAGE, METRIC_NAMES, collect, mean_std, scorer_label, scorer_table, stamp, watermarked

#: Post-hoc scorers in the order of the paper's Table I (KNN, not in the paper, follows ViM).
POSTHOC = (("MSP", "msp"), ("ODIN", "odin"), ("Mahalanobis", "mahalanobis"), ("Energy", "energy"),
           ("ViM", "vim"), ("KNN", "knn"), ("DICE", "dice"), ("ReAct", "react"), ("DICE+ReAct", "dice_react"),
           ("FeatureNorm", "featurenorm"), ("LiNe", "line"))
#: Table IV's scorers, in the paper's order.
TABLE4 = (("MSP", "msp"), ("Energy", "energy"), ("ODIN", "odin"), ("ReAct", "react"), ("FeatureNorm", "featurenorm"))
LAYOUT = {"table1": "per_ood", "table2": "average", "table3": "per_ood", "table4": "average"}
TITLES = {
    "table1": "Table I: post-hoc scorers, training methods and LFF per OOD set",
    "table2": "Table II: averages over the OOD sets",
    "table3": "Table III: post-hoc scorers, training methods and LFF per OOD set",
    "table4": "Table IV: post-hoc scorers with and without LFF (averages over the OOD sets)",
}
METRICS = ("fpr95", "auroc")
HIGHER = {"fpr95": False, "auroc": True}
REPRODUCED, PAPER_ONLY, NOT_IN_PAPER = "reproduced", "paper-reported", "reproduced (not in the paper)"


class Row(NamedTuple):
    method: str  # as the table prints it
    variant: str | None  # None: a paper-reported row
    scorer: str | None
    paper: str | None  # the paper's printed method name; None: not in the paper


class Method(NamedTuple):
    """A variant as the tables show it: its label and its own scorer (config ``variants.<v>``)."""

    label: str
    scorer: str


def _printed_names(table: str, paper: pd.DataFrame | None) -> list[str]:
    """The paper's printed methods of ``table`` in order (a default order without the paper)."""
    if paper is not None:
        names = list(dict.fromkeys(paper[paper["table"] == table]["method"]))
        if names:
            return names
    if table == "table4":
        return [n for label, _ in TABLE4 for n in (label, f"{label}+Ours")]
    return [label for label, s in POSTHOC if s != "knn"] + ["Ours"]


def rows(table: str, methods: Mapping[str, Method], roles: Mapping[str, str],
         paper: pd.DataFrame | None = None) -> list[Row]:
    """The rows of ``table``: ``methods`` are the variants in config order, ``roles`` map ``baseline``,
    ``control`` and ``ours`` to variant names (config ``tables``); ``paper`` the printed numbers
    (:func:`lffood.report.paper_numbers.load`), or None for a table without the paper column."""
    if table not in LAYOUT:
        raise KeyError(f"unknown paper table '{table}'; known: {sorted(LAYOUT)}")
    base, control, ours = roles["baseline"], roles["control"], roles["ours"]
    printed = _printed_names(table, paper)
    if table == "table4":
        out = []
        for name in printed:
            if name.endswith("+Ours"):
                continue
            s = POSTHOC_SCORERS[name]
            out.append(Row(name, base, s, name))
            if control in methods:
                out.append(Row(f"{name} ({methods[control].label})", control, s, None))
            out.append(Row(f"{name}+Ours", ours, s, f"{name}+Ours"))
        return out
    by_label = {m.label: v for v, m in methods.items()}
    used = {base, ours}
    out = []
    for name in printed:
        if name in POSTHOC_SCORERS:
            out.append(Row(name, base, POSTHOC_SCORERS[name], name))
            if name == "ViM":
                out.append(Row("KNN", base, "knn", None))
        elif name in TRAINING_METHODS or name.startswith("TagFog"):
            v = by_label.get(name)
            if v is not None:
                used.add(v)
                out.append(Row(f"{name} ({scorer_label(methods[v].scorer)})", v, methods[v].scorer, name))
            else:
                out.append(Row(name, None, None, name))
        elif name == "Ours":
            for v, m in methods.items():
                if v not in used:
                    used.add(v)
                    out.append(Row(f"{m.label} ({scorer_label(m.scorer)})", v, m.scorer, None))
            if ours in methods:
                m = methods[ours]
                out.append(Row(f"Ours ({m.label} + {scorer_label(m.scorer)})", ours, m.scorer, "Ours"))
    return out


def _paper_cell(paper: pd.DataFrame | None, table: str, bench: str, method: str | None, ood_set: str,
                metric: str) -> tuple[float, str]:
    if paper is None or method is None:
        return np.nan, ""
    hit = paper[(paper["table"] == table) & (paper["benchmark"] == bench) & (paper["method"] == method)
                & (paper["ood_set"] == ood_set) & (paper["metric"] == metric)]
    if hit.empty:
        return np.nan, ""
    return float(hit["value"].iloc[0]), str(hit["mark"].iloc[0] if pd.notna(hit["mark"].iloc[0]) else "")


def _cells(wide: pd.DataFrame, row: Row, sets: Sequence[str], prefix: str, *, table: str, bench: str,
           paper: pd.DataFrame | None) -> dict:
    out = {}
    have = row.variant is not None and (row.scorer, row.variant) in wide.index
    r = wide.loc[(row.scorer, row.variant)] if have else None
    for s in sets:
        for m in METRICS:
            key = f"{prefix}{s}/{m}"
            out[f"{key}_mean"] = r[f"{s}/{m}_mean"] if have else np.nan
            out[f"{key}_std"] = r[f"{s}/{m}_std"] if have else np.nan
            value, how = _paper_cell(paper, table, bench, row.paper, s, m)
            out[f"{key}_paper"], out[f"{key}_paper_mark"] = value, how
            out[f"{key}_diff"] = round(out[f"{key}_mean"] - value, 3) if have and not np.isnan(value) else np.nan
    out["n_seeds"] = int(r["n_seeds"]) if have else 0
    return out


def _source(row: Row, found: bool) -> str:
    if row.variant is None:
        return PAPER_ONLY
    if not found:
        return "not run"
    return REPRODUCED if row.paper is not None else NOT_IN_PAPER


def build(table: str, tidy: Mapping[str, pd.DataFrame], ood_sets: Mapping[str, Sequence[str]],
          methods: Mapping[str, Method], roles: Mapping[str, str], paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """``tidy[bench]``: per-seed metrics (:func:`lffood.report.tables.collect`, percent); ``ood_sets[bench]``:
    its OOD sets in column order. A reproduced row whose scorer or variant a benchmark did not run is
    left out of a per-OOD table and has empty cells in an average table."""
    records = []
    if LAYOUT[table] == "per_ood":
        for b, df in tidy.items():
            sets = [*ood_sets[b], AVERAGE]
            wide = scorer_table(df, ood_order=sets, metrics=METRICS).set_index(["scorer", "variant"])
            for r in rows(table, methods, roles, paper):
                found = r.variant is not None and (r.scorer, r.variant) in wide.index
                if not found and (paper is None or r.paper is None):
                    continue  # a scorer or variant this benchmark does not run, and no printed row either
                records.append({"benchmark": b, **r._asdict(), "source": _source(r, found),
                                **_cells(wide, r, sets, "", table=table, bench=b, paper=paper)})
    else:
        wides = {b: scorer_table(df, ood_order=[AVERAGE], metrics=METRICS).set_index(["scorer", "variant"])
                 for b, df in tidy.items()}
        for r in rows(table, methods, roles, paper):
            rec = {**r._asdict()}
            found = False
            for b, wide in wides.items():
                cells = _cells(wide, r, [AVERAGE], f"{b}/", table=table, bench=b, paper=paper)
                cells.pop("n_seeds")
                rec.update(cells)
                found |= r.variant is not None and (r.scorer, r.variant) in wide.index
            if found or (paper is not None and r.paper is not None):
                records.append({**rec, "source": _source(r, found)})
    return _mark_best(pd.DataFrame(records))


def _mark_best(df: pd.DataFrame) -> pd.DataFrame:
    """``<col>_mark``: bold for the best reproduced mean of each column (per benchmark block), underline
    for the second (ties share the mark)."""
    if df.empty:
        return df
    groups = df.groupby("benchmark", sort=False) if "benchmark" in df else [(None, df)]
    marks = {}
    for _, g in groups:
        for col in [c for c in df.columns if c.endswith("_mean")]:
            metric = col.rsplit("/", 1)[1].removesuffix("_mean")
            vals = g[col].dropna()
            ranked = sorted(set(vals.round(3)), reverse=HIGHER[metric])
            for i, v in vals.round(3).items():
                marks.setdefault(col.removesuffix("_mean") + "_mark", {})[i] = (
                    "bold" if ranked and v == ranked[0] else "underline" if len(ranked) > 1 and v == ranked[1] else "")
    for col, values in marks.items():
        df[col] = pd.Series(values).reindex(df.index).fillna("")
    return df


# ----------------------------------------------------------------------------- rendering
def _md_mark(text: str, how: str) -> str:
    return f"**{text}**" if how == "bold" else f"<u>{text}</u>" if how == "underline" else text


def _cell_text(r: pd.Series, key: str, md: bool, watermark: str | None = None) -> str:
    """The reproduced value (after ``watermark``, in the cell's format already), then the paper's."""
    mean, std, paper = r.get(f"{key}_mean"), r.get(f"{key}_std"), r.get(f"{key}_paper")
    fmt = _md_mark if md else (lambda t, h: latex.mark(t, h))
    parts = []
    if pd.notna(mean):
        ours = mean_std(mean, std, digits=2) if md else mean_std(mean, std, digits=2, pm=r"{\scriptsize$\pm$") + "}"
        parts.append(stamp(fmt(ours, r.get(f"{key}_mark", "")), watermark))
    if pd.notna(paper):
        p = fmt(f"{paper:.2f}", r.get(f"{key}_paper_mark", ""))
        diff = r.get(f"{key}_diff")
        d = "" if pd.isna(diff) else (f"; Δ {diff:+.2f}" if md else rf"; $\Delta$ {diff:+.2f}")
        parts.append(f"(paper {p}{d})")
    return " ".join(parts) if parts else ("–" if md else "--")


def _column_keys(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]], bench: str | None):
    if LAYOUT[table] == "per_ood":
        return [(f"{s}/{m}", f"{s} {METRIC_NAMES[m]}") for s in [*ood_sets[bench], AVERAGE] for m in METRICS]
    return [(f"{b}/{AVERAGE}/{m}", f"{b} {METRIC_NAMES[m]}") for b in ood_sets for m in METRICS]


def _blocks(table: str, df: pd.DataFrame):
    if LAYOUT[table] == "per_ood":
        return list(df.groupby("benchmark", sort=False))
    return [(None, df)]


NOTE = ("Cells: reproduced mean ± standard deviation over seeds, then (paper: the printed value; Δ = reproduced - "
        "paper). Percentages; FPR95 with ID as the positive class. Bold / underlined: best / second-best reproduced "
        "value of the column, and the paper's own marks on its values. Rows marked paper-reported are the paper's "
        "numbers of methods this workflow does not train; 'not run': a printed row whose scorer the benchmark does "
        "not run; 'not in the paper': reproduced only.")
NOTE_NO_PAPER = ("Mean ± standard deviation over seeds; percentages; FPR95 with ID as the positive class. Bold / "
                 "underlined: best / second-best value of the column. Rows marked 'not in the paper' are methods the "
                 "paper's table lacks.")


def _note(df: pd.DataFrame) -> str:
    return NOTE if any(c.endswith("_paper") for c in df.columns) else NOTE_NO_PAPER


def markdown(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]], title: str,
             watermark: str | None = None) -> str:
    lines = [f"# {stamp(title, watermark)}", "", _note(df), ""]
    for bench, grp in _blocks(table, df):
        cols = _column_keys(table, df, ood_sets, bench)
        if bench is not None:
            lines += [f"## {bench}", ""]
        header = ["Method", "Source", *[label for _, label in cols]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, r in grp.iterrows():
            cells = [_cell_text(r, k, True, watermark) for k, _ in cols]
            lines.append("| " + " | ".join([r["method"], r["source"], *cells]) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def to_latex(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]], title: str,
             watermark: str | None = None) -> str:
    cell_mark = latex.escape(watermark) if watermark else None  # the cells are LaTeX already
    out = []
    for bench, grp in _blocks(table, df):
        cols = _column_keys(table, df, ood_sets, bench)
        groups = ([*ood_sets[bench], AVERAGE] if bench is not None else list(ood_sets))
        header = [[("", 1), ("", 1), *[(g, len(METRICS)) for g in groups]],
                  [("Method", 1), ("Source", 1), *[(METRIC_NAMES[m], 1) for _ in groups for m in METRICS]]]
        body = [[latex.escape(r["method"]), latex.escape(r["source"]),
                 *[_cell_text(r, k, False, cell_mark) for k, _ in cols]] for _, r in grp.iterrows()]
        sources = list(grp["source"])
        breaks = [i for i in range(1, len(sources)) if (sources[i] == PAPER_ONLY) != (sources[i - 1] == PAPER_ONLY)]
        caption = f"{stamp(title, watermark)}{f' ({bench})' if bench else ''}. {_note(df)}"
        out.append(latex.tabular(header, body, caption=caption, label=f"tab:{table}{'-' + bench if bench else ''}",
                                 align="ll" + "c" * len(cols), midrules_before=breaks))
    return "\n".join(out)


def write_paper_table(table: str, metric_files: Mapping[str, Sequence[str]], ood_sets: Mapping[str, Sequence[str]],
                      *, csv: str, md: str, tex: str, methods: Mapping[str, Sequence[str]], roles: Mapping[str, str],
                      title: str, paper_path: str | None = None, watermark: str | None = None) -> pd.DataFrame:
    """``metric_files[bench]``: the per-(seed, variant) metrics CSVs of that benchmark; ``methods``:
    variant -> (label, scorer) in config order; ``roles``: config ``tables`` baseline/control/ours;
    ``paper_path``: the paper's printed numbers (None: no paper column, e.g. the embedded benchmark);
    ``watermark``: config ``watermark``, stamped on what was reproduced (module docstring). Returns
    the CSV table."""
    from . import paper_numbers

    tidy = {b: collect(files) for b, files in metric_files.items()}
    paper = paper_numbers.load(paper_path) if paper_path else None
    df = build(table, tidy, ood_sets, {v: Method(*m) for v, m in methods.items()}, roles, paper)
    if paper is None:
        df = df.drop(columns=[c for c in df.columns if c.endswith(("_paper", "_paper_mark", "_diff"))])
    if watermark:  # on the reproduced rows only: the paper-reported and 'not run' rows hold the paper's numbers
        df = watermarked(df, watermark, reproduced=df["source"].isin([REPRODUCED, NOT_IN_PAPER]))
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, df, ood_sets, title, watermark))
    with atomic_path(tex) as tmp:
        tmp.write_text(to_latex(table, df, ood_sets, title, watermark))
    return df
