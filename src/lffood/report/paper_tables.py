"""The paper's Tables I-IV from the workflow's own metrics (``results/tables/tableN.csv``).

Which scorer on which model fills each row is fixed here (it is the paper's layout, not a
hyperparameter); which benchmark fills each column group comes from the config key ``tables``.

* Table I / III (``per_ood``): rows (ID benchmark, method); per OOD set and average, FPR95 and AUROC.
* Table II / IV (``average``): rows method; per benchmark, FPR95 and AUROC averaged over its OOD sets.

Rows come from the configuration: the post-hoc rows score the ``baseline`` variant (the paper's CE
model); every other variant follows with its own ``scorer`` (the CE control, fine-tuned with LFF's
exact schedule and the CE objective, separates LFF's gain from the gain of training longer; "Ours"
is the ``ours`` variant, by default LFF with the energy score with ReAct; then the other trained
methods). Table IV pairs each of its scorers on the baseline, the control and ours. Every cell is
the mean and standard deviation over seeds (per-seed average over OOD sets first), in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..io import atomic_path
from .tables import AVERAGE, METRIC_NAMES, collect, scorer_table

#: Post-hoc scorers in the order of the paper's Table I (KNN, not in Table I, is listed after ViM).
POSTHOC = (("MSP", "msp"), ("ODIN", "odin"), ("Mahalanobis", "mahalanobis"), ("Energy", "energy"),
           ("ViM", "vim"), ("KNN", "knn"), ("DICE", "dice"), ("ReAct", "react"), ("DICE+ReAct", "dice_react"),
           ("FeatureNorm", "featurenorm"), ("LiNe", "line"))
#: Table IV's scorers, in the paper's order.
TABLE4 = (("MSP", "msp"), ("Energy", "energy"), ("ODIN", "odin"), ("ReAct", "react"), ("FeatureNorm", "featurenorm"))
LAYOUT = {"table1": "per_ood", "table2": "average", "table3": "per_ood", "table4": "average"}
TITLES = {
    "table1": "Table I: post-hoc scorers and LFF, ResNet-34 on CIFAR",
    "table2": "Table II: averages over the OOD sets, WRN-28-10 on CIFAR",
    "table3": "Table III: post-hoc scorers and LFF, ResNet-50 on ImageNet-100",
    "table4": "Table IV: post-hoc scorers with and without LFF (averages over the OOD sets)",
}
METRICS = ("fpr95", "auroc")


class Row(NamedTuple):
    method: str
    variant: str
    scorer: str


class Method(NamedTuple):
    """A variant as the tables show it: its label and its own scorer (config ``variants.<v>``)."""

    label: str
    scorer: str


def rows(table: str, methods: Mapping[str, Method], roles: Mapping[str, str]) -> list[Row]:
    """The rows of ``table``: ``methods`` are the variants in config order, ``roles`` map ``baseline``,
    ``control`` and ``ours`` to variant names (config ``tables``)."""
    from .tables import scorer_label

    if table not in LAYOUT:
        raise KeyError(f"unknown paper table '{table}'; known: {sorted(LAYOUT)}")
    base, control, ours = roles["baseline"], roles["control"], roles["ours"]
    if table == "table4":
        out = []
        for label, s in TABLE4:
            out += [Row(label, base, s), Row(f"{label} ({methods[control].label})", control, s),
                    Row(f"{label}+Ours", ours, s)]
        return out
    out = [Row(label, base, s) for label, s in POSTHOC]
    for v, m in methods.items():
        if v == base:
            continue
        name = f"Ours ({m.label} + {scorer_label(m.scorer)})" if v == ours else f"{m.label} ({scorer_label(m.scorer)})"
        out.append(Row(name, v, m.scorer))
    return out


def _lookup(tidy: pd.DataFrame, sets: Sequence[str]) -> pd.DataFrame:
    """Every (scorer, variant) of one benchmark with its cells for ``sets`` (the one wide summary,
    :func:`lffood.report.tables.scorer_table`)."""
    return scorer_table(tidy, ood_order=sets, metrics=METRICS).set_index(["scorer", "variant"])


def _cells(wide: pd.DataFrame, row: Row, sets: Sequence[str]) -> dict | None:
    if (row.scorer, row.variant) not in wide.index:
        return None
    r = wide.loc[(row.scorer, row.variant)]
    out = {f"{s}/{m}_{stat}": r[f"{s}/{m}_{stat}"] for s in sets for m in METRICS for stat in ("mean", "std")}
    out["n_seeds"] = int(r["n_seeds"])
    return out


def build(table: str, tidy: Mapping[str, pd.DataFrame], ood_sets: Mapping[str, Sequence[str]],
          methods: Mapping[str, Method], roles: Mapping[str, str]) -> pd.DataFrame:
    """``tidy[bench]``: the per-seed metrics (as :func:`lffood.report.tables.collect` returns, in
    percent); ``ood_sets[bench]``: its OOD sets in column order. Rows whose scorer a benchmark did
    not run are left out (per_ood) or left empty (average)."""
    records = []
    if LAYOUT[table] == "per_ood":
        for b, df in tidy.items():
            sets = [*ood_sets[b], AVERAGE]
            wide = _lookup(df, sets)
            for r in rows(table, methods, roles):
                cells = _cells(wide, r, sets)
                if cells is not None:
                    records.append({"benchmark": b, **r._asdict(), **cells})
    else:
        wides = {b: _lookup(df, [AVERAGE]) for b, df in tidy.items()}
        for r in rows(table, methods, roles):
            rec, found = r._asdict(), False
            for b, wide in wides.items():
                cells = _cells(wide, r, [AVERAGE])
                for m in METRICS:
                    for stat in ("mean", "std"):
                        rec[f"{b}/{m}_{stat}"] = cells[f"{AVERAGE}/{m}_{stat}"] if cells else np.nan
                found |= cells is not None
            if found:
                records.append(rec)
    return pd.DataFrame(records)


def markdown(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]]) -> str:
    lines = [f"# {TITLES[table]}", "",
             "Mean ± standard deviation over seeds; percentages; FPR95 with ID as the positive class. "
             "Post-hoc rows score the baseline (CE) model; the CE control is fine-tuned with LFF's schedule and the "
             "CE objective; the other rows are trained methods with their own scorer.", ""]

    def cell(r, prefix):
        mean, std = r[f"{prefix}_mean"], r[f"{prefix}_std"]
        return "–" if pd.isna(mean) else f"{mean:.2f} ± {std:.2f}"

    if LAYOUT[table] == "per_ood":
        for b, grp in df.groupby("benchmark", sort=False):
            sets = [*ood_sets[b], AVERAGE]
            header = ["Method"] + [f"{s} {METRIC_NAMES[m]}" for s in sets for m in METRICS]
            lines += [f"## {b}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join([r["method"]] + [cell(r, f"{s}/{m}") for s in sets for m in METRICS]) + " |"
                      for _, r in grp.iterrows()]
            lines.append("")
    else:
        benches = list(ood_sets)
        header = ["Method"] + [f"{b} {METRIC_NAMES[m]}" for b in benches for m in METRICS]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join([r["method"]] + [cell(r, f"{b}/{m}") for b in benches for m in METRICS]) + " |"
                  for _, r in df.iterrows()]
    return "\n".join(lines).rstrip() + "\n"


def write_paper_table(table: str, metric_files: Mapping[str, Sequence[str]], ood_sets: Mapping[str, Sequence[str]],
                      *, csv: str, md: str, methods: Mapping[str, Method], roles: Mapping[str, str]) -> pd.DataFrame:
    """``metric_files[bench]``: the per-(seed, variant) metrics CSVs of that benchmark; ``methods``:
    variant -> (label, scorer) in config order; ``roles``: config ``tables`` baseline/control/ours."""
    tidy = {b: collect(files) for b, files in metric_files.items()}
    df = build(table, tidy, ood_sets, {v: Method(*m) for v, m in methods.items()}, roles)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, df, ood_sets))
    return df
