"""Tables: mean and standard deviation over seeds per (model variant, scorer, OOD set) and on
the average over OOD sets (the average is taken per seed first, then summarised over seeds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path
from ..metrics import HIGHER_IS_BETTER, METRICS

VARIANT_NAMES = {"ce": "CE", "ce_control": "CE control", "lff": "LFF"}
METRIC_NAMES = {"fpr95": "FPR95↓", "auroc": "AUROC↑", "aupr_in": "AUPR-In↑", "aupr_out": "AUPR-Out↑"}
AVERAGE = "average"
KEYS = ["variant", "scorer"]


def collect(metric_files: Sequence[str]) -> pd.DataFrame:
    df = pd.concat([pd.read_csv(f) for f in metric_files], ignore_index=True)
    for m in (*METRICS, "id_acc"):
        df[m] = 100.0 * df[m]
    return df


def with_average(tidy: pd.DataFrame) -> pd.DataFrame:
    """Append, per (variant, scorer, seed), the mean over OOD sets as ood_set == 'average'."""
    avg = tidy.groupby([*KEYS, "seed"], as_index=False, sort=False)[[*METRICS, "id_acc"]].mean()
    avg["ood_set"] = AVERAGE
    return pd.concat([tidy, avg], ignore_index=True)


def summarize(tidy: pd.DataFrame) -> pd.DataFrame:
    """Rows (variant, scorer, ood_set); columns <metric>_mean, <metric>_std (std over seeds, ddof=1), n_seeds."""
    full = with_average(tidy)
    g = full.groupby([*KEYS, "ood_set"], sort=False)
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


def _order(df: pd.DataFrame) -> pd.DataFrame:
    vorder = {v: i for i, v in enumerate(VARIANT_NAMES)}
    return df.assign(_s=df["scorer"], _v=df["variant"].map(vorder)).sort_values(["_s", "_v"], kind="stable").drop(
        columns=["_s", "_v"])


def markdown(table: pd.DataFrame, ood_order: Sequence[str], title: str, metrics=("fpr95", "auroc")) -> str:
    """Markdown with 'mean ± std' cells; the best mean of each column within a scorer is bold."""
    sets = [*ood_order, AVERAGE]
    header = ["Scorer", "Model"] + [f"{s} {METRIC_NAMES[m]}" for s in sets for m in metrics] + ["ID acc↑"]
    lines = [f"# {title}", "",
             f"Mean ± standard deviation over {int(table['n_seeds'].max())} seed(s); percentages. "
             "FPR95 with ID as the positive class. Bold: best mean per column within each scorer.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scorer, grp in table.groupby("scorer", sort=False):
        best = {}
        for s in sets:
            for m in metrics:
                col = grp[f"{s}/{m}_mean"]
                best[(s, m)] = col.max() if HIGHER_IS_BETTER[m] else col.min()
        for _, r in grp.iterrows():
            cells = [scorer, VARIANT_NAMES.get(r["variant"], r["variant"])]
            for s in sets:
                for m in metrics:
                    mean, std = r[f"{s}/{m}_mean"], r[f"{s}/{m}_std"]
                    cell = f"{mean:.1f} ± {std:.1f}"
                    cells.append(f"**{cell}**" if np.isclose(mean, best[(s, m)]) and len(grp) > 1 else cell)
            cells.append(f"{r['id_acc_mean']:.1f} ± {r['id_acc_std']:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(metric_files: Sequence[str], *, csv: str, md: str, tidy: str, title: str,
                 ood_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Write the tidy metrics, the wide CSV table and its Markdown rendering; OOD sets in ``ood_order``
    (default: order of first appearance)."""
    data = collect(metric_files)
    ood_order = list(ood_order) if ood_order else list(dict.fromkeys(data["ood_set"]))
    table = _order(wide(summarize(data), ood_order))
    with atomic_path(tidy) as tmp:
        data.to_csv(tmp, index=False)
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, ood_order, title))
    return table
