"""Figures: L2-norm distributions of ID vs OOD penultimate features (paper Fig. 5) for every model
variant, and the norms of local vectors selected as background vs the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .. import h5schema  # noqa: E402
from ..io import atomic_path  # noqa: E402
from ..metrics import auroc  # noqa: E402

ID_COLOUR, OOD_COLOUR = "#d62728", "#2ca02c"
SEL_COLOUR, UNSEL_COLOUR = "#9467bd", "#ff7f0e"


def _save(fig, path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)


def _norms(path, split) -> np.ndarray:
    return np.linalg.norm(h5schema.read_split(path, split, ["features"])["features"], axis=1)


def feature_norm_figure(features: Mapping[str, Sequence[str]], out: str, title: str = "",
                        ood_order: Sequence[str] | None = None, labels: Mapping[str, str] | None = None) -> None:
    """Rows: model variants; columns: OOD sets. Histograms of ||pooled feature||_2 (first seed),
    ID test in red, OOD in green, with the AUROC of the norm itself as an OOD score."""
    variants = list(features)
    labels = labels or {}
    first = {v: features[v][0] for v in variants}
    ood_sets = [n for n, r in h5schema.list_splits(first[variants[0]]).items() if r == "ood"]
    if ood_order:
        ood_sets = [s for s in ood_order if s in ood_sets]
    fig, axes = plt.subplots(len(variants), len(ood_sets), figsize=(3.1 * len(ood_sets), 2.3 * len(variants)),
                             squeeze=False, sharex="col")
    for i, v in enumerate(variants):
        id_n = _norms(first[v], "test")
        for j, s in enumerate(ood_sets):
            ax = axes[i, j]
            ood_n = _norms(first[v], s)
            hi = np.percentile(np.r_[id_n, ood_n], 99.5)
            bins = np.linspace(0, hi, 40)
            ax.hist(id_n, bins=bins, density=True, alpha=0.55, color=ID_COLOUR, label="ID (test)")
            ax.hist(ood_n, bins=bins, density=True, alpha=0.55, color=OOD_COLOUR, label="OOD")
            ax.text(0.97, 0.95, f"AUROC {100 * auroc(id_n, ood_n):.1f}", transform=ax.transAxes, ha="right",
                    va="top", fontsize=8, bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none"})
            ax.set_yticks([])
            if i == 0:
                ax.set_title(s.replace("_", " "), fontsize=10)
            if j == 0:
                ax.set_ylabel(labels.get(v, v), fontsize=10)
            if i == len(variants) - 1:
                ax.set_xlabel("L2 norm of penultimate feature", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"Feature-norm distributions, ID vs OOD: {title} (first seed)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    _save(fig, out)


def local_norm_figure(features: Mapping[str, Sequence[str]], histories: Mapping[str, Sequence[str]], delta: float,
                      out: str, title: str = "", labels: Mapping[str, str] | None = None,
                      compare: Sequence[str] = ()) -> None:
    """One panel per variant: norms of ID-test local vectors with p_j(y|x) < delta (background, as LFF
    selects them) vs the rest. Last panel: during training, the mean norm of selected and unselected
    vectors per epoch (mean over seeds) of the ``compare`` variants (e.g. LFF vs the CE control)."""
    variants = list(features)
    labels = labels or {}
    ncols = min(4, len(variants) + 1)
    nrows = -(-(len(variants) + 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 3.0 * nrows), squeeze=False)
    axes = axes.ravel()
    all_norms = []
    data = {}
    for v in variants:
        d = h5schema.read_split(features[v][0], "test", ["local_norms", "local_gt_prob"])
        sel = d["local_gt_prob"] < delta
        data[v] = (d["local_norms"][sel], d["local_norms"][~sel], sel.mean())
        all_norms.append(d["local_norms"].ravel())
    hi = np.percentile(np.concatenate(all_norms), 99.5)
    bins = np.linspace(0, hi, 40)
    for ax, v in zip(axes, variants):
        s, u, frac = data[v]
        ax.hist(u, bins=bins, density=True, alpha=0.55, color=UNSEL_COLOUR, label=f"p(y|z_j) ≥ {delta:g}")
        if len(s):
            ax.hist(s, bins=bins, density=True, alpha=0.55, color=SEL_COLOUR, label=f"background: p < {delta:g}")
        ax.set_title(f"{labels.get(v, v)}: {100 * frac:.0f}% background", fontsize=10)
        ax.set_xlabel("L2 norm of local vector z_j (ID test)", fontsize=8)
        ax.set_yticks([])
    axes[0].legend(fontsize=7, frameon=False)
    ax = axes[len(variants)]
    for v, ls in zip(compare, ("-", "--", ":", "-.")):
        frames = [pd.read_csv(p) for p in histories.get(v, [])]
        if not frames or "norm_selected" not in frames[0]:
            continue
        h = pd.concat(frames).groupby("epoch")[["norm_selected", "norm_unselected"]].mean()
        ax.plot(h.index, h["norm_selected"], ls, color=SEL_COLOUR, label=f"{labels.get(v, v)}: background")
        ax.plot(h.index, h["norm_unselected"], ls, color=UNSEL_COLOUR, label=f"{labels.get(v, v)}: other")
    ax.set_xlabel("training epoch", fontsize=8)
    ax.set_ylabel("mean local-vector norm (train)", fontsize=8)
    ax.set_title("During training (mean over seeds)", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    for extra in axes[len(variants) + 1:]:
        extra.set_visible(False)
    fig.suptitle(f"Local background vectors: {title}", fontsize=11)
    fig.tight_layout()
    _save(fig, out)


def render_figures(features: Mapping[str, Sequence[str]], histories: Mapping[str, Sequence[str]], *, delta: float,
                   title: str, norms_png: str, local_png: str, labels: Mapping[str, str],
                   ood_order: Sequence[str] | None = None, compare: Sequence[str] = ()) -> None:
    feature_norm_figure(features, norms_png, title, ood_order, labels)
    local_norm_figure(features, histories, delta, local_png, title, labels, compare)
