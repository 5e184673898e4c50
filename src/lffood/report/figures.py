"""Figures, sized for a 7-inch column and drawn with one colour-blind-safe palette (Okabe-Ito):

* :func:`feature_norm_figure`: L2-norm distributions of ID vs OOD penultimate features per model
  variant (paper Fig. 5), with the AUROC of the norm itself as an OOD score in each panel;
* :func:`local_norm_figure`: norms of local vectors selected as background vs the rest, and their
  trajectories while fine-tuning;
* :func:`write_auroc_bars`: average and per-OOD-set AUROC of every method with its own scorer
  (paper Fig. 3), the CE control marked as the reference; on a benchmark the paper prints, the
  average AUROC of every method of its table, reproduced beside the printed value
  (:func:`paper_bar_table`, :func:`plot_paper_bars`; printed-only methods marked as such);
* :func:`write_tsne`: t-SNE of pooled ID and OOD features and of ID background local vectors
  (paper Fig. 2), from vectors that :mod:`lffood.report.figure_data` extracts with the network;
* :func:`write_heatmaps`: local-vector norms over ID and OOD images, one row per model, upsampled
  bilinearly and overlaid on the images with one colour bar per row (paper Fig. 7).

Every figure is exactly :data:`WIDTH_IN` inches wide (constrained layout, saved without tight
cropping), written as PNG (:data:`DPI`) and PDF, both atomically; a watermark (config ``watermark``)
is the first line of every figure's heading (:func:`suptitle`). :func:`layout_problems` checks a
figure for text under :data:`MIN_FONT_PT`, text outside the canvas and overlapping text. No torch
here: the report environment has none.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .. import h5schema  # noqa: E402
from ..errors import ConfigError, DataError  # noqa: E402
from ..io import atomic_path  # noqa: E402
from ..metrics import auroc  # noqa: E402
from ..monitor import read_background  # noqa: E402
from . import paper_tables as _paper_tables  # noqa: E402

log = logging.getLogger("lffood.report.figures")

#: figure width (inches): one page column of the paper; every figure is exactly this wide
WIDTH_IN = 7.0
#: PNG resolution (the PDF is vector)
DPI = 200
#: smallest font size (points at WIDTH_IN) any text may have
MIN_FONT_PT = 7.0

#: Okabe & Ito (2008), the colour-blind-safe palette of every figure
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7"}
ID_COLOUR, OOD_COLOUR = OKABE_ITO["blue"], OKABE_ITO["orange"]
SEL_COLOUR, UNSEL_COLOUR = OKABE_ITO["purple"], OKABE_ITO["green"]  # background local vectors / the rest
BACKGROUND_COLOUR = SEL_COLOUR
#: methods by role (config tables.baseline / control / ours); the sensitivity figure uses ours and control
ROLE_COLOURS = {"ours": OKABE_ITO["vermillion"], "control": OKABE_ITO["blue"], "baseline": OKABE_ITO["black"]}
#: the other methods, in config order (yellow last: weakest on white)
OTHER_COLOURS = tuple(OKABE_ITO[c] for c in ("orange", "green", "purple", "sky_blue", "yellow"))
#: colour map of the heat maps (perceptually uniform, colour-blind safe)
HEATMAP_CMAP = "viridis"

RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9, "axes.linewidth": 0.6,
      "xtick.major.width": 0.6, "ytick.major.width": 0.6, "pdf.fonttype": 42, "ps.fonttype": 42,
      "savefig.dpi": DPI, "figure.dpi": 100}


@contextlib.contextmanager
def style():
    """The figures' matplotlib settings (font sizes in points at the printed width)."""
    with plt.rc_context(RC):
        yield


def method_colours(variants: Sequence[str], roles: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variant -> Okabe-Ito colour: by role (``roles``: role -> variant, as config ``tables``) for the
    paper's method, its CE control and the CE baseline; the others in order from :data:`OTHER_COLOURS`."""
    by_variant = {v: ROLE_COLOURS[r] for r, v in (roles or {}).items() if r in ROLE_COLOURS}
    others = iter(OTHER_COLOURS * (1 + len(variants) // len(OTHER_COLOURS)))
    return {v: by_variant[v] if v in by_variant else next(others) for v in variants}


def new_figure(height: float, **kwargs):
    return plt.figure(figsize=(WIDTH_IN, height), layout="constrained", **kwargs)


def freeze_layout(fig) -> None:
    """Lay ``fig`` out once (constrained layout) and keep that layout for every later draw: the
    positions are fractions of the canvas, so PNG and PDF get the same, and drawing a figure of many
    panels again costs seconds less each time."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


def suptitle(fig, text: str, title: str = "", watermark: str | None = None) -> None:
    """The figure's heading: ``text`` and the benchmark's ``title`` on one line, or on two when
    that would not fit the width (the title shortened if need be); the ``watermark``, if any, on a
    line of its own above them."""
    import textwrap

    full = f"{text}: {title}" if title else text
    heading = full if len(full) <= 90 else f"{text}\n{textwrap.shorten(title, 100, placeholder=' ...')}"
    fig.suptitle(f"{textwrap.fill(watermark, 90)}\n{heading}" if watermark else heading)


def save_figure(fig, png: str, pdf: str | None = None) -> None:
    """PNG (:data:`DPI`) and PDF, each atomically; the canvas is kept as laid out (no tight crop),
    so the printed width is exactly the figure's. What :func:`layout_problems` finds is logged as
    warnings starting with 'layout:'."""
    freeze_layout(fig)
    for problem in layout_problems(fig):
        log.warning("layout: %s: %s", png, problem)
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    if pdf:
        with atomic_path(pdf, suffix=".pdf") as tmp:
            fig.savefig(tmp, format="pdf")
    plt.close(fig)


# ----------------------------------------------------------------------------- legibility check
def _drawn_tick_labels(axis) -> list:
    try:  # the ticks that are drawn (inside the view limits); public API lists every located tick
        ticks = axis._update_ticks()
    except AttributeError:  # pragma: no cover - older/newer matplotlib
        ticks = axis.get_major_ticks()
    return [t for tick in ticks for t in (tick.label1, tick.label2) if t.get_visible()]


def drawn_texts(fig) -> list:
    """Every visible, non-empty text of ``fig``: figure texts, legends, and per visible axes its
    titles, texts, axis labels, offset texts and drawn tick labels."""
    texts, legends, stack = [], [], [fig]
    while stack:  # the figure and its subfigures
        f = stack.pop()
        texts += f.texts
        legends += f.legends
        stack += f.subfigs
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                texts += [axis.label, axis.get_offset_text(), *_drawn_tick_labels(axis)]
    for leg in legends:
        if leg.get_visible():
            texts += [*leg.get_texts(), leg.get_title()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def layout_problems(fig, min_pt: float = MIN_FONT_PT, tol_px: float = 1.0) -> list[str]:
    """What would not read at the printed size: text under ``min_pt`` points, text reaching outside
    the canvas (clipped), and pairs of texts whose boxes overlap. Empty when the figure is clean."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    W, H = fig.bbox.width, fig.bbox.height
    texts = drawn_texts(fig)
    problems, boxes = [], []
    for t in texts:
        name = repr(t.get_text()[:40])
        if t.get_fontsize() < min_pt - 1e-6:
            problems.append(f"{name}: {t.get_fontsize():.1f} pt < {min_pt:g} pt")
        bb = t.get_window_extent(renderer)
        if bb.x0 < -tol_px or bb.y0 < -tol_px or bb.x1 > W + tol_px or bb.y1 > H + tol_px:
            problems.append(f"{name}: outside the canvas ({bb.x0:.0f}, {bb.y0:.0f}, {bb.x1:.0f}, {bb.y1:.0f} "
                            f"of {W:.0f} x {H:.0f} px)")
        boxes.append((name, bb.expanded(1.0, 1.0).padded(-tol_px / 2)))
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            if boxes[i][1].width > 0 and boxes[j][1].width > 0 and boxes[i][1].overlaps(boxes[j][1]):
                problems.append(f"{boxes[i][0]} overlaps {boxes[j][0]}")
    return problems


# ----------------------------------------------------------------------------- Fig. 5: feature norms
def _norms(path, split) -> np.ndarray:
    return np.linalg.norm(h5schema.read_split(path, split, ["features"])["features"], axis=1)


def _ood_sets(path, ood_order: Sequence[str] | None) -> list[str]:
    sets = [n for n, r in h5schema.list_splits(path).items() if r == "ood"]
    return [s for s in ood_order if s in sets] if ood_order else sets


def plot_feature_norms(features: Mapping[str, Sequence[str]], title: str = "", ood_order: Sequence[str] | None = None,
                       labels: Mapping[str, str] | None = None, watermark: str | None = None):
    """Rows: model variants; columns: OOD sets. Density histograms of ||pooled feature||_2 of the
    first seed's model, ID test vs the OOD set (same bins down each column), and in the corner the
    AUROC (%) of the norm itself used as the OOD score (higher norm = more ID)."""
    variants = list(features)
    labels = labels or {}
    first = {v: features[v][0] for v in variants}
    ood_sets = _ood_sets(first[variants[0]], ood_order)
    norms = {v: {s: _norms(first[v], s) for s in ["test", *ood_sets]} for v in variants}
    with style():
        fig = new_figure(0.55 + 0.92 * len(variants))
        axes = fig.subplots(len(variants), len(ood_sets), squeeze=False, sharex="col")
        for j, s in enumerate(ood_sets):
            hi = np.percentile(np.concatenate([np.r_[norms[v]["test"], norms[v][s]] for v in variants]), 99.5)
            # norms of 1e4 and more (a diverged model) are drawn in units of a power of ten named in the
            # axis label: matplotlib's own offset text ('1e12') would overlap the label
            exp = int(np.floor(np.log10(hi))) if hi >= 1e4 else 0
            hi /= 10.0 ** exp
            bins = np.linspace(0, hi, 40)
            for i, v in enumerate(variants):
                ax = axes[i, j]
                id_n, ood_n = norms[v]["test"] / 10.0 ** exp, norms[v][s] / 10.0 ** exp
                hist_kw = {"bins": bins, "density": True, "histtype": "stepfilled", "alpha": 0.55}
                ax.hist(id_n, color=ID_COLOUR, label="ID test", **hist_kw)
                ax.hist(ood_n, color=OOD_COLOUR, label="OOD set", **hist_kw)
                ax.text(0.97, 0.93, f"AUROC {100 * auroc(id_n, ood_n):.1f}", transform=ax.transAxes, ha="right",
                        va="top", fontsize=7, bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none",
                                                     "pad": 1.0})
                ax.set_yticks([])
                ax.xaxis.set_major_locator(MaxNLocator(4))
                if i == 0:
                    ax.set_title(s.replace("_", " "))
                if j == 0:
                    ax.set_ylabel(f"{labels.get(v, v)}\ndensity")
                if i == len(variants) - 1:
                    # in units of 1e<exp>: no longer than the plain label, so six columns still fit
                    ax.set_xlabel(f"L2 norm / 1e{exp}" if exp else "feature L2 norm")
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=2, frameon=False)
        suptitle(fig, "Penultimate-feature norms, ID vs OOD (first seed)", title, watermark)
    return fig


def feature_norm_figure(features: Mapping[str, Sequence[str]], out: str, title: str = "",
                        ood_order: Sequence[str] | None = None, labels: Mapping[str, str] | None = None,
                        pdf: str | None = None, watermark: str | None = None) -> None:
    """:func:`plot_feature_norms` written to ``out`` (PNG) and ``pdf``."""
    save_figure(plot_feature_norms(features, title, ood_order, labels, watermark), out, pdf)


# ----------------------------------------------------------------------------- local norms
def plot_local_norms(features: Mapping[str, Sequence[str]], monitors: Mapping[str, Sequence[str]], delta: float,
                     title: str = "", labels: Mapping[str, str] | None = None, compare: Sequence[str] = (),
                     watermark: str | None = None):
    """One panel per variant (three per row): density of the norms of ID-test local vectors with
    p_j(y|x) < delta (background, as LFF selects them) and of the rest, first seed, same bins for
    all. Bottom panel: during training, the mean norm of the vectors with p_j(y|x) < delta and of
    the rest per epoch (mean over seeds) of the ``compare`` variants (e.g. LFF vs the CE control),
    from their training jobs' monitor files (``monitors``, :mod:`lffood.monitor`) at the same delta."""
    variants = list(features)
    labels = labels or {}
    data, all_norms = {}, []
    for v in variants:
        d = h5schema.read_split(features[v][0], "test", ["local_norms", "local_gt_prob"])
        sel = d["local_gt_prob"] < delta
        data[v] = (d["local_norms"][sel], d["local_norms"][~sel], sel.mean())
        all_norms.append(d["local_norms"].ravel())
    bins = np.linspace(0, np.percentile(np.concatenate(all_norms), 99.5), 40)
    ncols = min(3, len(variants))
    nrows = -(-len(variants) // ncols)
    with style():
        fig = new_figure(0.75 + 1.3 * nrows + 1.9)
        top, bottom = fig.subfigures(2, 1, height_ratios=[0.45 + 1.3 * nrows, 1.9])
        axes = top.subplots(nrows, ncols, squeeze=False, sharex=True).ravel()
        for k, (ax, v) in enumerate(zip(axes, variants)):
            s, u, frac = data[v]
            for vectors, colour in ((u, UNSEL_COLOUR), (s, SEL_COLOUR)):
                if len(vectors):  # none selected (or all): no histogram, the title says 0% (100%)
                    ax.hist(vectors, bins=bins, density=True, histtype="stepfilled", alpha=0.55, color=colour)
            ax.set_title(f"{labels.get(v, v)}: {100 * frac:.0f}% background")
            ax.set_yticks([])
            ax.xaxis.set_major_locator(MaxNLocator(5))
            if k % ncols == 0:
                ax.set_ylabel("density")
            if k + ncols >= len(variants):
                ax.set_xlabel("local-vector norm ||z_j||")
                ax.tick_params(labelbottom=True)
        for extra in axes[len(variants):]:
            extra.set_visible(False)
        handles = [Patch(color=SEL_COLOUR, alpha=0.55), Patch(color=UNSEL_COLOUR, alpha=0.55)]
        top.legend(handles, [f"background: p_j(y|x) < δ = {delta:g}", f"other local vectors: p_j(y|x) ≥ {delta:g}"],
                   loc="outside lower center", ncol=2, frameon=False)
        ax = bottom.subplots()
        plotted = False
        for v, ls in zip(compare, ("-", "--", ":", "-.")):
            frames = [f for f in read_background(monitors.get(v, []), delta) if len(f)]
            if not frames:  # an imported model: no training, no monitor rows
                continue
            h = pd.concat(frames).groupby("epoch")[["norm_selected", "norm_unselected"]].mean()
            ax.plot(h.index, h["norm_selected"], ls, marker="o", ms=3, color=SEL_COLOUR,
                    label=f"{labels.get(v, v)}: background")
            ax.plot(h.index, h["norm_unselected"], ls, marker="s", ms=3, color=UNSEL_COLOUR,
                    label=f"{labels.get(v, v)}: other")
            plotted = True
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel("mean local-vector norm\n(training images)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title("During fine-tuning (mean over seeds)")
        if plotted:
            ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
        suptitle(fig, "Local background vectors", title, watermark)
    return fig


def local_norm_figure(features: Mapping[str, Sequence[str]], monitors: Mapping[str, Sequence[str]], delta: float,
                      out: str, title: str = "", labels: Mapping[str, str] | None = None,
                      compare: Sequence[str] = (), pdf: str | None = None, watermark: str | None = None) -> None:
    """:func:`plot_local_norms` written to ``out`` (PNG) and ``pdf``."""
    save_figure(plot_local_norms(features, monitors, delta, title, labels, compare, watermark), out, pdf)


def render_figures(features: Mapping[str, Sequence[str]], monitors: Mapping[str, Sequence[str]], *, delta: float,
                   title: str, norms_png: str, local_png: str, labels: Mapping[str, str],
                   ood_order: Sequence[str] | None = None, compare: Sequence[str] = (),
                   norms_pdf: str | None = None, local_pdf: str | None = None, watermark: str | None = None) -> None:
    feature_norm_figure(features, norms_png, title, ood_order, labels, pdf=norms_pdf, watermark=watermark)
    local_norm_figure(features, monitors, delta, local_png, title, labels, compare, pdf=local_pdf,
                      watermark=watermark)


# ----------------------------------------------------------------------------- Fig. 3: AUROC bars
def auroc_bar_table(tidy: pd.DataFrame, methods: Mapping[str, tuple[str, str]],
                    ood_order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (method, OOD set or 'average'): AUROC (%) of the variant with its own scorer,
    mean and standard deviation (ddof 1; 0 with one seed) over seeds; the average is over OOD sets
    per seed first. ``tidy``: rows of metric files (:func:`lffood.report.tables.collect`);
    ``methods``: variant -> (label, scorer), in plotting order."""
    from .tables import AVERAGE, scorer_label, summarize

    sets = [*(ood_order or dict.fromkeys(tidy["ood_set"])), AVERAGE]
    rows = []
    for variant, (label, scorer) in methods.items():
        part = tidy[(tidy["variant"] == variant) & (tidy["scorer"] == scorer)]
        if part.empty:
            raise ConfigError(f"no metrics of variant '{variant}' with its scorer '{scorer}' (key variants.{variant}."
                             "scorer); the scorer must run on that variant")
        summary = summarize(part).set_index("ood_set")
        for s in sets:
            if s not in summary.index:
                raise DataError(f"no metrics of variant '{variant}' ({scorer}) on OOD set '{s}'")
            rows.append({"variant": variant, "label": label, "scorer": scorer, "scorer_label": scorer_label(scorer),
                         "ood_set": s, "auroc_mean": float(summary.loc[s, "auroc_mean"]),
                         "auroc_std": float(summary.loc[s, "auroc_std"]), "n_seeds": int(summary.loc[s, "n_seeds"])})
    return pd.DataFrame(rows)


def plot_auroc_bars(table: pd.DataFrame, *, colours: Mapping[str, str], reference: str | None = None,
                    title: str = "", watermark: str | None = None):
    """Grouped bars: one group per OOD set and the average, one bar per method (mean over seeds),
    error bars one standard deviation. The ``reference`` variant is hatched and its mean drawn as a
    dashed line across its group. The y axis starts at the 5% step below the lowest mean - std."""
    from .tables import AVERAGE

    sets = list(dict.fromkeys(table["ood_set"]))
    methods = list(dict.fromkeys(table["variant"]))
    n = len(methods)
    width = 0.8 / n
    lo = float((table["auroc_mean"] - table["auroc_std"]).min())
    bottom = max(0.0, 5.0 * math.floor((lo - 1.0) / 5.0))
    with style():
        fig = new_figure(2.9)
        ax = fig.subplots()
        idx = table.set_index(["variant", "ood_set"])
        for k, v in enumerate(methods):
            r = idx.loc[v]
            means = np.array([r.loc[s, "auroc_mean"] for s in sets])
            stds = np.array([r.loc[s, "auroc_std"] for s in sets])
            x = np.arange(len(sets)) - 0.4 + width * (k + 0.5)
            is_ref = v == reference
            label = f"{r['label'].iloc[0]} ({r['scorer_label'].iloc[0]}){', reference' if is_ref else ''}"
            ax.bar(x, means - bottom, width, bottom=bottom, color=colours[v], label=label,
                   hatch="////" if is_ref else None, edgecolor="white" if is_ref else "none", linewidth=0.0)
            if (stds > 0).any():
                ax.errorbar(x, means, yerr=stds, fmt="none", ecolor="#404040", elinewidth=0.7, capsize=1.5)
            if is_ref:
                for g, m in enumerate(means):
                    ax.hlines(m, g - 0.45, g + 0.45, colors=colours[v], linestyles="--", linewidth=0.9, zorder=3)
        ax.set_xticks(np.arange(len(sets)), [("average" if s == AVERAGE else s).replace("_", " ") for s in sets])
        ax.axvline(len(sets) - 1.5, color="#999999", linewidth=0.6)
        ax.set_ylim(bottom, 100)
        ax.set_xlim(-0.5, len(sets) - 0.5)
        ax.set_ylabel("AUROC (%)")
        ax.set_xlabel("OOD set (average: mean over the OOD sets)")
        ax.yaxis.grid(True, linewidth=0.4, color="#dddddd")
        ax.set_axisbelow(True)
        fig.legend(loc="outside lower center", ncol=3, frameon=False)
        n_seeds = int(table["n_seeds"].max())
        suptitle(fig, f"AUROC per method with its own scorer, mean ± std over {n_seeds} seed(s)", title, watermark)
    return fig


def write_auroc_bars(metric_files: Sequence[str], methods: Mapping[str, tuple[str, str]], *, roles: Mapping[str, str],
                     png: str, pdf: str, csv: str, title: str = "",
                     ood_order: Sequence[str] | None = None, watermark: str | None = None,
                     paper: str | pd.DataFrame | None = None, paper_table: str | None = None,
                     bench: str | None = None) -> pd.DataFrame:
    """Fig. 3: :func:`auroc_bar_table` from the metric files to ``csv`` and :func:`plot_auroc_bars`
    to ``png``/``pdf``; ``roles``: config ``tables`` (the control is the reference); ``watermark``:
    on every CSV row and the figure's heading.

    With ``paper`` (the printed numbers: a path or :func:`lffood.report.paper_numbers.load`'s frame),
    ``paper_table`` (table1, table2 or table3) and ``bench`` (the benchmark as the paper prints it):
    the paper's figure instead, :func:`paper_bar_table` to ``csv`` and :func:`plot_paper_bars`
    (reproduced average AUROC of every method of that table beside the printed value; the
    watermark on the reproduced rows only)."""
    from .tables import collect, watermarked

    if paper_table is not None:
        from . import paper_numbers

        printed = paper if isinstance(paper, pd.DataFrame) else paper_numbers.load(paper)
        table = paper_bar_table(collect(metric_files), table=paper_table, bench=bench, methods=methods, roles=roles,
                                paper=printed, ood_order=ood_order)
        with atomic_path(csv) as tmp:
            watermarked(table.round(3), watermark, reproduced=table["source"] != PAPER_ONLY).to_csv(tmp, index=False)
        fig = plot_paper_bars(table, colours=method_colours(list(methods), roles), roles=roles, labels=methods,
                              title=title, paper_table=paper_table, watermark=watermark)
        save_figure(fig, png, pdf)
        return table
    table = auroc_bar_table(collect(metric_files), methods, ood_order)
    with atomic_path(csv) as tmp:
        watermarked(table.round(3), watermark).to_csv(tmp, index=False)
    save_figure(plot_auroc_bars(table, colours=method_colours(list(methods), roles), reference=roles.get("control"),
                                title=title, watermark=watermark), png, pdf)
    return table


#: how the paper's printed values are drawn in Fig. 3 (and named in its legend)
PAPER_LABEL = "paper (printed)"
PAPER_STYLE = {"facecolor": "white", "edgecolor": "#555555", "hatch": "//////", "linewidth": 0.6}
#: the CSV's ``source`` of a printed method that no variant reproduces, and of a reproduced row whose
#: scorer or variant did not run (as in the paper tables)
PAPER_ONLY, NOT_RUN = _paper_tables.PAPER_ONLY, "not run"
PAPER_TABLE_NUMERALS = {"table1": "I", "table2": "II", "table3": "III", "table4": "IV"}


def paper_bar_table(tidy: pd.DataFrame, *, table: str, bench: str, methods: Mapping[str, tuple[str, str]],
                    roles: Mapping[str, str], paper: pd.DataFrame,
                    ood_order: Sequence[str] | None = None) -> pd.DataFrame:
    """The rows of the paper's Fig. 3 for one benchmark: the methods of ``table`` in the paper's order,
    joined with the reproduced ones as the paper tables join them (:func:`lffood.report.paper_tables.rows`:
    each post-hoc method is that scorer on the ``baseline`` variant, "Ours" the ``ours`` variant with its
    scorer, a printed training method a variant reproduces by its label, the workflow's other variants
    added before "Ours"). Per row: ``auroc_mean`` / ``auroc_std`` (average over the OOD sets per seed,
    then mean and std over seeds; NaN where not reproduced), ``auroc_paper`` (the printed average; NaN
    where the paper has no such row), ``diff`` (reproduced - paper), ``source`` (as the paper tables)
    and ``extra_data`` (the paper's dagger: trained with extra data)."""
    from .paper_tables import NOT_IN_PAPER, REPRODUCED, Method, rows
    from .tables import AVERAGE, summarize

    printed = paper[(paper["table"] == table) & (paper["benchmark"] == bench)]
    if printed.empty:
        raise DataError(f"the paper prints no {table} numbers for benchmark '{bench}'")
    sets = list(ood_order) if ood_order else None
    part = tidy if sets is None else tidy[tidy["ood_set"].isin(sets)]
    summary = summarize(part).set_index(["variant", "scorer", "ood_set"]) if len(part) else None
    out = []
    for r in rows(table, {v: Method(*m) for v, m in methods.items()}, roles, printed):
        key = (r.variant, r.scorer, AVERAGE)
        have = r.variant is not None and summary is not None and key in summary.index
        if r.variant is not None and not have and r.paper is None:
            continue  # a scorer this benchmark does not run, not in the paper either
        hit = printed[(printed["method"] == r.paper) & (printed["ood_set"] == AVERAGE) & (printed["metric"] == "auroc")]
        value = float(hit["value"].iloc[0]) if r.paper is not None and len(hit) else np.nan
        extra = bool(printed[printed["method"] == r.paper]["extra_data"].any()) if r.paper is not None else False
        mean = float(summary.loc[key, "auroc_mean"]) if have else np.nan
        std = float(summary.loc[key, "auroc_std"]) if have else np.nan
        source = PAPER_ONLY if r.variant is None else (REPRODUCED if r.paper is not None else NOT_IN_PAPER)
        if r.variant is not None and not have:
            source = NOT_RUN
        out.append({"method": r.method, "paper_method": r.paper, "variant": r.variant, "scorer": r.scorer,
                    "source": source, "extra_data": extra, "ood_set": AVERAGE, "auroc_mean": mean, "auroc_std": std,
                    "n_seeds": int(summary.loc[key, "n_seeds"]) if have else 0, "auroc_paper": value,
                    "diff": mean - value if have and not np.isnan(value) else np.nan})
    return pd.DataFrame(out)


def _paper_row_label(r) -> str:
    name = r["method"]
    if r["source"] == PAPER_ONLY:
        return f"{name}{' (extra data)' if r['extra_data'] else ''}: printed only"
    if r["source"] == NOT_RUN:
        return f"{name}: not run"
    return name


def plot_paper_bars(table: pd.DataFrame, *, colours: Mapping[str, str], roles: Mapping[str, str],
                    labels: Mapping[str, Sequence[str]] | None = None, title: str = "",
                    paper_table: str | None = None, watermark: str | None = None):
    """Horizontal bars, one row per method of :func:`paper_bar_table` (paper order, top to bottom):
    the reproduced average AUROC as a filled bar in its model's colour (error bar: one std over seeds),
    and below it the paper's printed value as a hollow hatched bar (:data:`PAPER_STYLE`). Methods the
    paper prints and the workflow does not reproduce have only the hollow bar, and their names say
    "printed only" in grey italics; the CE control's reproduced value is a dashed vertical line. The x
    axis starts at the 5% step below the lowest value drawn."""
    labels = labels or {}
    t = table.reset_index(drop=True)
    n = len(t)
    values = np.r_[(t["auroc_mean"] - t["auroc_std"].fillna(0.0)).dropna(), t["auroc_paper"].dropna()]
    lo = float(values.min()) if len(values) else 50.0
    left = max(0.0, 5.0 * math.floor((lo - 1.0) / 5.0))
    control, baseline = roles.get("control"), roles.get("baseline")
    h = 0.36
    with style():
        fig = new_figure(1.35 + 0.2 * n)
        ax = fig.subplots()
        y = np.arange(n)
        for i, r in t.iterrows():
            if not np.isnan(r["auroc_mean"]):
                ax.barh(i - h / 2, r["auroc_mean"] - left, h, left=left, color=colours.get(r["variant"], "#999999"),
                        linewidth=0.0)
                if r["auroc_std"] > 0:
                    ax.errorbar(r["auroc_mean"], i - h / 2, xerr=r["auroc_std"], fmt="none", ecolor="#7f7f7f",
                                elinewidth=0.7, capsize=1.5)
            if not np.isnan(r["auroc_paper"]):
                ax.barh(i + h / 2, r["auroc_paper"] - left, h, left=left, **PAPER_STYLE)
        ax.set_yticks(y, [_paper_row_label(r) for _, r in t.iterrows()])
        for tick, (_, r) in zip(ax.get_yticklabels(), t.iterrows()):
            if r["source"] in (PAPER_ONLY, NOT_RUN):
                tick.set_color("#666666")
                tick.set_fontstyle("italic")
        # group boundaries: post-hoc scorers on the baseline | the paper's training methods | the
        # workflow's other variants (not in the paper) | Ours
        kinds = ["posthoc" if r["variant"] == baseline and r["variant"] is not None
                 else "ours" if r["variant"] == roles.get("ours") and r["variant"] is not None
                 else "training" if r["paper_method"] is not None and not pd.isna(r["paper_method"]) else "added"
                 for _, r in t.iterrows()]
        for i in range(1, n):
            if kinds[i] != kinds[i - 1]:
                ax.axhline(i - 0.5, color="#999999", linewidth=0.6)
        handles = []
        ctrl = t[(t["variant"] == control) & t["auroc_mean"].notna()]
        if len(ctrl):
            m = float(ctrl["auroc_mean"].iloc[0])
            ax.axvline(m, color=colours.get(control, "#0072B2"), linestyle="--", linewidth=0.9, zorder=3)
            handles.append(plt.Line2D([], [], color=colours.get(control, "#0072B2"), linestyle="--", linewidth=0.9,
                                      label=f"{labels.get(control, [control])[0]}, reproduced (reference)"))
        shown = list(dict.fromkeys(v for v in t["variant"].dropna() if t[t["variant"] == v]["auroc_mean"].notna().any()))
        for v in shown:
            name = labels.get(v, [v])[0]
            what = f"{name} model (post-hoc rows)" if v == baseline else name
            handles.append(Patch(color=colours.get(v, "#999999"), label=f"reproduced: {what}"))
        handles.append(Patch(**PAPER_STYLE, label=PAPER_LABEL))
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlim(left, 100)
        ax.set_xlabel("average AUROC over the OOD sets (%)")
        ax.xaxis.grid(True, linewidth=0.4, color="#dddddd")
        ax.set_axisbelow(True)
        fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
        n_seeds = int(t["n_seeds"].max()) if n else 0
        printed = f"the paper's Table {PAPER_TABLE_NUMERALS.get(paper_table, '')}".rstrip() if paper_table else \
            "the paper"
        suptitle(fig, f"Average AUROC per method: reproduced (mean ± std, {n_seeds} seed(s)) and printed in {printed}",
                 title, watermark)
    return fig


# ----------------------------------------------------------------------------- Fig. 2: t-SNE
#: the point groups of the t-SNE figure, in drawing order: name -> (legend text, colour, marker, size)
TSNE_GROUPS = {"id": ("ID test images (pooled feature)", ID_COLOUR, "o", 5),
               "ood": ("OOD images (pooled feature)", OOD_COLOUR, "^", 6),
               "background": ("ID background local vectors z_j", BACKGROUND_COLOUR, "x", 7)}


def read_tsne_vectors(path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """The vectors file of :func:`lffood.report.figure_data.write_tsne_vectors`: (meta, variant ->
    {id, id_labels, ood, background})."""
    import json

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        data = {v: {k: z[f"{v}__{k}"] for k in ("id", "id_labels", "ood", "background")} for v in meta["variants"]}
    return meta, data


def tsne_embedding(groups: Mapping[str, np.ndarray], random_state: int = 0, perplexity: float = 30.0,
                   n_jobs: int | None = 1, max_iter: int = 1000) -> dict[str, np.ndarray]:
    """One joint 2-D t-SNE (scikit-learn, Barnes-Hut, PCA initialisation, fixed ``random_state``) of
    all groups' vectors (raw, so that norms count), ``max_iter`` iterations: group -> (n, 2).
    Perplexity is capped below n / 3.
    Runs on ``n_jobs`` threads (OpenMP included): on a shared machine, unlimited OpenMP threads made
    it several times slower, and one thread makes it reproducible bit for bit."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    names = [g for g in groups if len(groups[g])]
    x = np.concatenate([np.asarray(groups[g], dtype=np.float32) for g in names])
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3.0)))
    threads = max(1, n_jobs or 1)
    with threadpool_limits(limits=threads):
        y = TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", random_state=random_state,
                 n_jobs=threads, max_iter=max_iter).fit_transform(x)
    out, start = {g: np.zeros((0, 2)) for g in groups}, 0
    for g in names:
        out[g] = y[start:start + len(groups[g])]
        start += len(groups[g])
    return out


def plot_tsne(embeddings: Mapping[str, Mapping[str, np.ndarray]], id_labels: Mapping[str, np.ndarray], *,
              labels: Mapping[str, str], ood_set: str, classes: Sequence[str] | None = None, title: str = "",
              max_annotated_classes: int = 20, watermark: str | None = None):
    """One panel per variant: its t-SNE embedding (:func:`tsne_embedding`), groups as
    :data:`TSNE_GROUPS`; each ID class's number at the median of its points (up to
    ``max_annotated_classes`` classes). Axes have no units: only neighbourhoods are meaningful."""
    variants = list(embeddings)
    with style():
        fig = new_figure(3.35)
        axes = fig.subplots(1, len(variants), squeeze=False)[0]
        for ax, v in zip(axes, variants):
            emb = embeddings[v]
            counts = []
            for g, (_, colour, marker, size) in TSNE_GROUPS.items():
                pts = emb[g]
                counts.append(len(pts))
                if len(pts):
                    ax.scatter(pts[:, 0], pts[:, 1], s=size, c=colour, marker=marker, alpha=0.6,
                               linewidths=0.6 if marker == "x" else 0.0, rasterized=True)
            lab = np.asarray(id_labels[v])
            uniq = np.unique(lab)
            if len(uniq) <= max_annotated_classes:
                for c in uniq:
                    mx, my = np.median(emb["id"][lab == c], axis=0)
                    ax.text(mx, my, str(c), fontsize=7, ha="center", va="center", color="black",
                            bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.6})
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
            ax.set_title(f"{labels.get(v, v)}: {counts[0]} ID, {counts[1]} OOD, {counts[2]} background")
        handles = [plt.Line2D([], [], ls="none", marker=m, color=c, markersize=4, markeredgewidth=1.0)
                   for _, c, m, _ in TSNE_GROUPS.values()]
        names = [TSNE_GROUPS["id"][0], f"OOD set {ood_set.replace('_', ' ')} (pooled feature)",
                 TSNE_GROUPS["background"][0]]
        fig.legend(handles, names, loc="outside lower center", ncol=3, frameon=False)
        suptitle(fig, "t-SNE of penultimate-layer vectors (first seed)", title, watermark)
        fig.canvas.draw()
        for ax in axes:
            _hide_overlapping(ax.texts, fig.canvas.get_renderer())
    return fig


def _hide_overlapping(texts, renderer) -> None:
    """Hide each text whose box overlaps one kept before it (class labels of overlapping clusters)."""
    kept = []
    for t in texts:
        bb = t.get_window_extent(renderer).padded(2.0)
        if any(bb.overlaps(k) for k in kept):
            t.set_visible(False)
        else:
            kept.append(bb)


def write_tsne(vectors: str, *, png: str, pdf: str, labels: Mapping[str, str], title: str = "",
               random_state: int = 0, perplexity: float = 30.0, n_jobs: int | None = 1, max_iter: int = 1000,
               watermark: str | None = None) -> dict:
    """Fig. 2 from the vectors file: one t-SNE per variant, then the figure. Returns the embeddings."""
    meta, data = read_tsne_vectors(vectors)
    embeddings = {}
    for v, d in data.items():
        t0 = time.perf_counter()
        embeddings[v] = tsne_embedding({g: d[g] for g in TSNE_GROUPS}, random_state, perplexity, n_jobs, max_iter)
        log.info("t-SNE of %s: %d points in %.1f s", v, sum(len(d[g]) for g in TSNE_GROUPS), time.perf_counter() - t0)
    fig = plot_tsne(embeddings, {v: d["id_labels"] for v, d in data.items()}, labels=labels, ood_set=meta["ood_set"],
                    title=title, watermark=watermark)
    save_figure(fig, png, pdf)
    return embeddings


# ----------------------------------------------------------------------------- Fig. 7: heat maps
def map_shape(n_locations: int, image_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of a last feature map with ``n_locations`` local vectors for an image of ``image_hw``:
    the factorisation H * W = L whose aspect ratio is closest to the image's (square images: sqrt L)."""
    ih, iw = image_hw
    best = None
    for h in range(1, n_locations + 1):
        if n_locations % h:
            continue
        w = n_locations // h
        err = abs(math.log((h / w) / (ih / iw)))
        if best is None or err < best[0] - 1e-12:
            best = (err, h, w)
    h, w = best[1], best[2]
    if abs(math.log((h / w) / (ih / iw))) > math.log(1.5):
        raise DataError(f"{n_locations} local vectors do not tile a {ih} x {iw} image (closest map {h} x {w})")
    return h, w


def heatmap_selection(sizes: Mapping[str, int], *, n_id: int, per_ood: int, seed: int,
                      id_split: str = "test") -> list[tuple[str, int]]:
    """(split, row) of the images shown: ``n_id`` of ``id_split`` and ``per_ood`` of every other split
    in ``sizes`` (split -> number of images), drawn without replacement with ``seed``, in order."""
    rng = np.random.default_rng(seed)
    out = []
    for split, n in sizes.items():
        k = min(n_id if split == id_split else per_ood, n)
        out += [(split, int(i)) for i in np.sort(rng.choice(n, size=k, replace=False))]
    return out


#: opacity of the norm map over the (grey-scale) image in the heat-map rows
HEATMAP_ALPHA = 0.6


def upsample_bilinear(grid: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``grid`` (h x w) resized to ``shape`` (H x W) by bilinear interpolation between the centres of
    its cells (half-pixel centres, edges clamped: torch's ``interpolate(mode="bilinear",
    align_corners=False)``), so each local vector's norm sits over the centre of its receptive field."""
    g = np.asarray(grid, dtype=np.float64)
    h, w = g.shape
    H, W = shape

    def axis(n_in, n_out):
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, x - i0

    y0, y1, fy = axis(h, H)
    x0, x1, fx = axis(w, W)
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x1] * fx
    bottom = g[y1][:, x0] * (1 - fx) + g[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def _grey(img: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R BT.601) of an RGB image in 0..1, or the image itself when it has one channel."""
    a = np.asarray(img, dtype=np.float64)
    a = a / 255.0 if a.max() > 1.0 else a
    return a if a.ndim == 2 else a[..., :3] @ np.array([0.299, 0.587, 0.114])


def plot_heatmaps(images: Sequence[np.ndarray], titles: Sequence[str], maps: Mapping[str, Sequence[np.ndarray]], *,
                  labels: Mapping[str, str], title: str = "", watermark: str | None = None,
                  alpha: float = HEATMAP_ALPHA):
    """Top row: the images; one row per variant below: its local-vector norm map (H x W) upsampled
    bilinearly to the image's size (:func:`upsample_bilinear`) and overlaid with opacity ``alpha``
    on a grey-scale copy of the image; one colour scale per row from 0 to the row's maximum, with a
    colour bar at the row's end."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    variants = list(maps)
    ncols = len(images)
    side = min(1.0, (WIDTH_IN - 1.35) / ncols)
    with style():
        fig = new_figure(0.55 + (side + 0.12) * (1 + len(variants)))
        axes = fig.subplots(1 + len(variants), ncols + 1, squeeze=False,
                            gridspec_kw={"width_ratios": [1.0] * ncols + [0.07]})
        for j, (img, t) in enumerate(zip(images, titles)):
            ax = axes[0, j]
            ax.imshow(img, interpolation="nearest")
            ax.set_title(t)
        axes[0, -1].set_visible(False)
        greys = [_grey(img) for img in images]
        for i, v in enumerate(variants, start=1):
            vmax = max(float(np.max(m)) for m in maps[v]) or 1.0
            norm = Normalize(vmin=0.0, vmax=vmax)
            for j, (m, grey) in enumerate(zip(maps[v], greys)):
                h, w = grey.shape[:2]
                extent = (-0.5, w - 0.5, h - 0.5, -0.5)
                axes[i, j].imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", extent=extent)
                axes[i, j].imshow(upsample_bilinear(m, (h, w)), cmap=HEATMAP_CMAP, norm=norm, alpha=alpha,
                                  interpolation="nearest", extent=extent)
            cb = fig.colorbar(ScalarMappable(norm=norm, cmap=HEATMAP_CMAP), cax=axes[i, -1])
            cb.locator = MaxNLocator(3)
            cb.update_ticks()
            cb.set_label("||z_j||", labelpad=1)
            axes[i, 0].set_ylabel(labels.get(v, v))
        axes[0, 0].set_ylabel("image")
        for ax in axes[:, :-1].ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        suptitle(fig, "L2 norm of each local vector of the last feature map, over the image (first seed)", title,
                 watermark)
    return fig


def _column_title(split: str, row: int, label: int, classes: Sequence[str] | None, id_split: str) -> str:
    if split == id_split:
        name = classes[label] if classes is not None and 0 <= label < len(classes) else str(label)
        return f"ID #{row}\nclass {name}"
    return f"OOD #{row}\n{split.replace('_', ' ')}"


def write_heatmaps(features: Mapping[str, str], split_paths: Mapping[str, str], *, png: str, pdf: str,
                   labels: Mapping[str, str], n_id: int = 2, per_ood: int = 1, seed: int = 0, title: str = "",
                   id_split: str = "test", watermark: str | None = None) -> list[tuple[str, int]]:
    """Fig. 7: the images chosen by :func:`heatmap_selection` (``split_paths``: ``id_split`` first,
    then the OOD sets to show) and the local norms of each variant's feature file (``features``:
    variant -> one feature file, rows in split order), reshaped with :func:`map_shape`. Returns the
    (split, row) pairs shown."""
    from ..data.arrays import load_split

    splits = {s: load_split(p) for s, p in split_paths.items()}
    chosen = heatmap_selection({s: len(sp) for s, sp in splits.items()}, n_id=n_id, per_ood=per_ood, seed=seed,
                               id_split=id_split)
    images = [np.asarray(splits[s].images[r]) for s, r in chosen]
    titles = [_column_title(s, r, int(splits[s].labels[r]), splits[s].meta.get("classes"), id_split)
              for s, r in chosen]
    maps = {}
    for v, path in features.items():
        rows = {s: h5schema.read_split(path, s, ["local_norms", "labels"]) for s in splits}
        for s, d in rows.items():
            if not np.array_equal(d["labels"], np.asarray(splits[s].labels)):
                raise DataError(f"{path}: split '{s}' does not match {split_paths[s]} row for row; rebuild the "
                                 "feature file with snakemake")
        maps[v] = []
        for (s, r), img in zip(chosen, images):
            norms = rows[s]["local_norms"][r]
            h, w = map_shape(norms.shape[0], img.shape[:2])
            maps[v].append(norms.reshape(h, w))
    save_figure(plot_heatmaps(images, titles, maps, labels=labels, title=title, watermark=watermark), png, pdf)
    return chosen
