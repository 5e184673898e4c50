"""The paper's Tables I-IV from the workflow's own metrics (``results/tables/tableN.csv``).

Which scorer on which model fills each row is fixed here (it is the paper's layout, not a
hyperparameter); which benchmark fills each column group comes from the config key ``tables``.

* Table I / III (``per_ood``): rows (ID benchmark, method); per OOD set and average, FPR95 and AUROC.
* Table II / IV (``average``): rows method; per benchmark, FPR95 and AUROC averaged over its OOD sets.

Post-hoc rows score the CE model; "Ours" is LFF scored with ``ours_scorer`` (the paper's default is
the energy score with ReAct); the CE control (fine-tuned with LFF's exact schedule, lambda = 0) is
added so that LFF's gain is separated from the gain of simply training longer. Every cell is the
mean and standard deviation over seeds (per-seed average over OOD sets first), in percent.
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


def rows(table: str, ours_scorer: str) -> list[Row]:
    if table not in LAYOUT:
        raise KeyError(f"unknown paper table '{table}'; known: {sorted(LAYOUT)}")
    if table == "table4":
        out = []
        for label, s in TABLE4:
            out += [Row(label, "ce", s), Row(f"{label} (CE control)", "ce_control", s), Row(f"{label}+Ours", "lff", s)]
        return out
    return ([Row(label, "ce", s) for label, s in POSTHOC]
            + [Row(f"CE control ({ours_scorer})", "ce_control", ours_scorer), Row(f"Ours (LFF + {ours_scorer})", "lff", ours_scorer)])


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
          ours_scorer: str = "react") -> pd.DataFrame:
    """``tidy[bench]``: the per-seed metrics (as :func:`lffood.report.tables.collect` returns, in
    percent); ``ood_sets[bench]``: its OOD sets in column order. Rows whose scorer a benchmark did
    not run are left out (per_ood) or left empty (average)."""
    records = []
    if LAYOUT[table] == "per_ood":
        for b, df in tidy.items():
            sets = [*ood_sets[b], AVERAGE]
            wide = _lookup(df, sets)
            for r in rows(table, ours_scorer):
                cells = _cells(wide, r, sets)
                if cells is not None:
                    records.append({"benchmark": b, **r._asdict(), **cells})
    else:
        wides = {b: _lookup(df, [AVERAGE]) for b, df in tidy.items()}
        for r in rows(table, ours_scorer):
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
             "Post-hoc rows score the CE model; the CE control is fine-tuned with LFF's schedule and lambda = 0.", ""]

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
                      *, csv: str, md: str, ours_scorer: str = "react") -> pd.DataFrame:
    """``metric_files[bench]``: the per-(seed, variant) metrics CSVs of that benchmark."""
    tidy = {b: collect(files) for b, files in metric_files.items()}
    df = build(table, tidy, ood_sets, ours_scorer)
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, df, ood_sets))
    return df
