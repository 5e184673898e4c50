"""Sensitivity of a method to one hyperparameter at a time (the LFF paper's Fig. 6).

Each sweep point is a variant fine-tuned with one value of one parameter of its objective
(``lffood.variants.sweep_points``). Its score is the average AUROC (and FPR95) over the OOD sets,
per seed, with the sweep's base variant's own scorer; the CE control with the same scorer is the
reference line, as the paper's dashed baseline. Where that scorer does not apply to the control
(SSOD's OOD-head scores need SSOD's head), the control is scored with its own scorer, and the
legend says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path
from .figures import ROLE_COLOURS, new_figure, save_figure, style, suptitle
from .tables import collect, seed_std, watermarked

#: the swept method and the reference: the colours of LFF and its CE control in every figure
METHOD_COLOUR, REFERENCE_COLOUR = ROLE_COLOURS["ours"], ROLE_COLOURS["control"]


def per_seed_average(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean over OOD sets of AUROC and FPR95 per (variant, scorer, seed), in percent."""
    return tidy.groupby(["variant", "scorer", "seed"], as_index=False)[["auroc", "fpr95"]].mean()


def sensitivity_table(tidy: pd.DataFrame, points: Sequence[Mapping], reference: str,
                      reference_scorer: str | None = None) -> pd.DataFrame:
    """Tidy rows: one per (parameter, value, seed) and one per (parameter, reference seed), with the
    average AUROC and FPR95 over the OOD sets. ``points``: dicts with param, value, variant, base and
    scorer (the workflow's ``sweep_table``). The reference is scored with the sweep's scorer, or
    with ``reference_scorer`` (the control's own) where that scorer has no metrics for it."""
    avg = per_seed_average(tidy).set_index(["variant", "scorer"])
    rows = []
    for p in points:
        tried = list(dict.fromkeys([p["scorer"], reference_scorer or p["scorer"]]))
        ref_scorer = next((sc for sc in tried if (reference, sc) in avg.index), tried[0])
        for kind, variant, value, scorer in (("point", p["variant"], p["value"], p["scorer"]),
                                             ("reference", reference, np.nan, ref_scorer)):
            key = (variant, scorer)
            if key not in avg.index:
                names = " or ".join(f"'{sc}'" for sc in (tried if kind == "reference" else [scorer]))
                raise ValueError(f"no metrics of variant '{variant}' with scorer {names} for the sweep of "
                                 f"{p['base']}.{p['param']}")
            for _, r in avg.loc[[key]].iterrows():
                rows.append({"param": p["param"], "base": p["base"], "kind": kind, "value": value, "variant": variant,
                             "scorer": scorer, "seed": int(r["seed"]), "auroc": r["auroc"], "fpr95": r["fpr95"]})
    df = pd.DataFrame(rows)
    return df.drop_duplicates(["param", "base", "kind", "variant", "seed"]).reset_index(drop=True)


def sensitivity_figure(df: pd.DataFrame, *, png: str, pdf: str, title: str, labels: Mapping[str, str],
                       watermark: str | None = None) -> None:
    """One panel per swept parameter: average AUROC (mean ± std over seeds) against the value, the
    reference's mean as a dashed line with a ± std band. The figures' style, palette, 7-inch width and
    legibility check (:mod:`lffood.report.figures`)."""
    groups = list(dict.fromkeys(zip(df["base"], df["param"])))
    with style():
        fig = new_figure(2.6)
        axes = fig.subplots(1, len(groups), squeeze=False)
        legends = []  # (axis, reference label): a legend on the first panel and wherever the reference differs
        for ax, (base, param) in zip(axes[0], groups):
            g = df[(df["base"] == base) & (df["param"] == param)]
            pts = g[g["kind"] == "point"].groupby("value")["auroc"].agg(["mean", "std"]).fillna(0.0)
            ref = g[g["kind"] == "reference"]["auroc"]
            ax.errorbar(pts.index, pts["mean"], yerr=pts["std"], marker="o", ms=4, capsize=3, color=METHOD_COLOUR,
                        label=labels.get(base, base))
            ref_row = g[g["kind"] == "reference"].iloc[0]
            ref_label = labels.get(ref_row["variant"], "reference")
            point_scorer = g[g["kind"] == "point"]["scorer"].iloc[0]
            if ref_row["scorer"] != point_scorer:  # the control cannot take the sweep's scorer
                ref_label = f"{ref_label} ({ref_row['scorer']})"
            ax.axhline(ref.mean(), ls="--", color=REFERENCE_COLOUR, label=ref_label)
            ax.axhspan(ref.mean() - seed_std(ref), ref.mean() + seed_std(ref), color=REFERENCE_COLOUR, alpha=0.12)
            ax.set_xlabel(f"{param}")
            ax.set_ylabel("average AUROC (%)")
            ax.set_title(f"{labels.get(base, base)}: {param}")
            legends.append((ax, ref_label))
        for i, (ax, ref_label) in enumerate(legends):
            if i == 0 or ref_label != legends[0][1]:
                ax.legend(frameon=False)
        n = int(df["seed"].nunique())
        suptitle(fig, f"Sensitivity, mean ± std over {n} seed(s)", title, watermark)
        save_figure(fig, png, pdf)


def write_sensitivity(metric_files: Sequence[str], points: Sequence[Mapping], *, reference: str,
                      labels: Mapping[str, str], title: str, csv: str, png: str, pdf: str,
                      reference_scorer: str | None = None, watermark: str | None = None) -> pd.DataFrame:
    """:func:`sensitivity_table` to ``csv`` and :func:`sensitivity_figure` to ``png``/``pdf``;
    ``watermark`` (config ``watermark``): on every CSV row and the figure's heading."""
    df = sensitivity_table(collect(metric_files), points, reference, reference_scorer)
    with atomic_path(csv) as tmp:
        watermarked(df, watermark).to_csv(tmp, index=False)
    sensitivity_figure(df, png=png, pdf=pdf, title=title, labels=labels, watermark=watermark)
    return df
