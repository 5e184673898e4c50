"""Sensitivity of a method to one hyperparameter at a time (the LFF paper's Fig. 6).

Each sweep point is a variant fine-tuned with one value of one parameter of its objective
(``lffood.variants.sweep_points``). Its score is the average AUROC (and FPR95) over the OOD sets,
per seed, with the sweep's base variant's own scorer; the CE control with the same scorer is the
reference line. Where that scorer does not apply to the control (SSOD's OOD-head scores need
SSOD's head), the control is scored with its own scorer, and the legend says which. The paper's own
dashed baseline (the printed average AUROC of NPOS on CIFAR-100, of SSD+ on ImageNet-100) is an
optional second reference line (``paper_reference``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from ..io import atomic_path
from .figures import OKABE_ITO, ROLE_COLOURS, new_figure, save_figure, style, suptitle
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


#: the printed reference method's line (the paper draws it dashed blue; blue is the CE control here)
PAPER_COLOUR = OKABE_ITO["black"]
#: how a swept parameter is named in the panels (LFF: delta, mu, lambda; SSOD: gamma)
SYMBOLS = {"delta": "δ", "mu": "μ", "lambda": "λ", "gamma": "γ", "alpha": "α", "tau": "τ"}


def paper_reference_label(ref: Mapping) -> str:
    """The legend text of the paper's reference line, e.g. 'NPOS, printed in the paper (Table I): 88.31'."""
    from .figures import PAPER_TABLE_NUMERALS

    table = PAPER_TABLE_NUMERALS.get(ref.get("table"), ref.get("table"))
    return f"{ref['method']}, printed in the paper (Table {table} average): {ref['auroc']:.2f}"


def sensitivity_figure(df: pd.DataFrame, *, png: str, pdf: str, title: str, labels: Mapping[str, str],
                       watermark: str | None = None, paper_reference: Mapping | None = None) -> None:
    """One panel per swept parameter: average AUROC (mean ± std over seeds) against the value, the
    reference's (the CE control's) mean as a dashed line with a ± std band, and with
    ``paper_reference`` ({method, table, auroc}: the paper's Fig. 6 baseline, NPOS on CIFAR-100 and
    SSD+ on ImageNet-100) its printed average AUROC as a dotted black line on every panel. One legend
    below the panels. The figures' style, palette, 7-inch width and legibility check
    (:mod:`lffood.report.figures`)."""
    groups = list(dict.fromkeys(zip(df["base"], df["param"])))
    with style():
        fig = new_figure(2.75)
        axes = fig.subplots(1, len(groups), squeeze=False)
        # legend text -> handle, in order of first appearance: the swept methods, the control, the paper
        methods, references, printed = {}, {}, {}
        for ax, (base, param) in zip(axes[0], groups):
            g = df[(df["base"] == base) & (df["param"] == param)]
            pts = g[g["kind"] == "point"].groupby("value")["auroc"].agg(["mean", "std"]).fillna(0.0)
            ref = g[g["kind"] == "reference"]["auroc"]
            line = ax.errorbar(pts.index, pts["mean"], yerr=pts["std"], marker="o", ms=4, capsize=3,
                               color=METHOD_COLOUR, label=labels.get(base, base))
            methods.setdefault(labels.get(base, base), line)
            ref_row = g[g["kind"] == "reference"].iloc[0]
            ref_label = labels.get(ref_row["variant"], "reference")
            point_scorer = g[g["kind"] == "point"]["scorer"].iloc[0]
            if ref_row["scorer"] != point_scorer:  # the control cannot take the sweep's scorer
                ref_label = f"{ref_label} ({ref_row['scorer']})"
            references.setdefault(ref_label, ax.axhline(ref.mean(), ls="--", color=REFERENCE_COLOUR, label=ref_label))
            ax.axhspan(ref.mean() - seed_std(ref), ref.mean() + seed_std(ref), color=REFERENCE_COLOUR, alpha=0.12)
            if paper_reference is not None:
                text = paper_reference_label(paper_reference)
                printed.setdefault(text, ax.axhline(paper_reference["auroc"], ls=":", lw=1.4, color=PAPER_COLOUR,
                                                    label=text))
            if len(pts) == 1:  # one point: its value is the one tick
                ax.set_xticks(list(pts.index), [f"{v:g}" for v in pts.index])
            else:
                ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.set_xlabel(f"{param} ({SYMBOLS[param]})" if param in SYMBOLS else param)
            ax.set_title(f"{labels.get(base, base)}: {SYMBOLS.get(param, param)}")
        axes[0, 0].set_ylabel("average AUROC (%)")
        handles = {**methods, **references, **printed}
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncol=min(3, len(handles)) if printed else min(4, len(handles)), frameon=False)
        n = int(df["seed"].nunique())
        suptitle(fig, f"Sensitivity, mean ± std over {n} seed(s)", title, watermark)
        save_figure(fig, png, pdf)


def paper_rows(points: Sequence[Mapping], ref: Mapping) -> pd.DataFrame:
    """The CSV rows of the paper's printed reference: one per swept parameter, kind 'paper'."""
    groups = list(dict.fromkeys((p["base"], p["param"]) for p in points))
    return pd.DataFrame([{"param": param, "base": base, "kind": "paper", "value": np.nan, "variant": ref["method"],
                          "scorer": f"printed, {ref['table']}", "seed": np.nan, "auroc": ref["auroc"],
                          "fpr95": ref.get("fpr95", np.nan)} for base, param in groups])


def write_sensitivity(metric_files: Sequence[str], points: Sequence[Mapping], *, reference: str,
                      labels: Mapping[str, str], title: str, csv: str, png: str, pdf: str,
                      reference_scorer: str | None = None, watermark: str | None = None,
                      paper_reference: Mapping | None = None) -> pd.DataFrame:
    """:func:`sensitivity_table` to ``csv`` and :func:`sensitivity_figure` to ``png``/``pdf``;
    ``watermark`` (config ``watermark``): on every reproduced CSV row and the figure's heading;
    ``paper_reference`` ({method, table, auroc, fpr95}: the printed average of the paper's Fig. 6
    baseline) is drawn and added to the CSV as rows of kind 'paper' (never watermarked)."""
    df = sensitivity_table(collect(metric_files), points, reference, reference_scorer)
    out = df
    if paper_reference is not None:  # printed rows have no seed: the column stays integer, empty there
        out = pd.concat([df, paper_rows(points, paper_reference)], ignore_index=True)
        out["seed"] = out["seed"].astype("Int64")
    with atomic_path(csv) as tmp:
        watermarked(out, watermark, reproduced=out["kind"] != "paper").to_csv(tmp, index=False)
    sensitivity_figure(df, png=png, pdf=pdf, title=title, labels=labels, watermark=watermark,
                       paper_reference=paper_reference)
    return df
