"""The README's results, generated from the results (``lffood results``), never typed by hand.

For one benchmark it reads the tidy per-seed metrics (``results/<bench>/metrics_all.csv``, percent,
with each metric's bootstrap standard error over test images) and the comparison with the CE
control (``results/tables/<bench>_vs_control.csv``, :mod:`lffood.report.compare`), and renders Markdown:

* every method (variant) with its own scorer: AUROC per OOD set and on average, FPR95, ID accuracy;
  each cell the mean over seeds ± the half-width of its interval over seeds and test images
  (:func:`lffood.stats.cell`);
* every method against the CE control, per OOD set and on average: the paired AUROC difference with
  its interval and verdict, as the comparison table computed them (one computation; the rule is
  :mod:`lffood.stats`: win / loss only when the interval excludes 0). The scorer each side is scored
  with is :func:`lffood.report.compare.comparisons`'.

A header names the commit, the machine and the date the numbers came from, so they cannot silently
go stale: ``lffood results --write README.md`` replaces the block between the README's markers.
Metrics that carry a watermark (config ``watermark``) keep it: on the header and on every cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .. import stats
from ..errors import IntegrityError
from . import compare
from .tables import AVERAGE, scorer_label, stamp, watermark_of, with_average

START, END = "<!-- results:start -->", "<!-- results:end -->"
VALUES = ("auroc", "fpr95", "id_acc")


def _check_se(tidy: pd.DataFrame) -> None:
    missing = [f"{v}_se" for v in VALUES if f"{v}_se" not in tidy or tidy[f"{v}_se"].isna().any()]
    if missing:
        raise IntegrityError(f"the metrics lack the test-set standard errors {missing} (metrics files written before "
                         "the bootstrap, lffood.stats): rebuild them with snakemake (their params changed, so a "
                         "plain run does it), then rerun lffood results")


def _cell(sel: pd.DataFrame, value: str, level: float, watermark: str | None = None) -> str:
    """``mean ± half-width`` of the ``level`` interval of one value over the seeds in ``sel``."""
    iv = stats.cell(sel[value].to_numpy(float), sel[f"{value}_se"].to_numpy(float), level)
    return stamp(f"{iv.estimate:.1f} ± {iv.half_width:.1f}", watermark)


def methods_table(tidy: pd.DataFrame, methods: Mapping[str, tuple[str, str]], ood_sets: Sequence[str],
                  level: float = 0.95) -> str:
    """Markdown: one row per method (label, its own scorer), AUROC per OOD set and average, average
    FPR95 and ID accuracy, mean over seeds ± the half-width of the ``level`` interval over seeds and
    test images (:func:`lffood.stats.cell`); the cells carry the metrics' watermark, if any."""
    _check_se(tidy)
    full, wm = with_average(tidy), watermark_of(tidy)  # standard errors of the average: the sets' mean, a bound
    head = ["Method", "Scorer", *[f"{s} AUROC" for s in ood_sets], "average AUROC", "average FPR95", "ID acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, (label, scorer) in methods.items():
        sel = full[(full["variant"] == v) & (full["scorer"] == scorer)]
        if sel.empty:
            continue
        by_set = {s: sel[sel["ood_set"] == s] for s in [*ood_sets, AVERAGE]}
        cells = [*(_cell(by_set[s], "auroc", level, wm) for s in [*ood_sets, AVERAGE]),
                 _cell(by_set[AVERAGE], "fpr95", level, wm), _cell(by_set[AVERAGE], "id_acc", level, wm)]
        lines.append("| " + " | ".join([label, scorer_label(scorer), *cells]) + " |")
    return "\n".join(lines) + "\n"


def control_table(comparison: pd.DataFrame, ood_sets: Sequence[str], metric: str = "auroc") -> str:
    """Markdown: every method against the control (rows of the comparison table, config order), the
    paired difference of ``metric`` per OOD set and on average as ``diff [low, high] verdict``; the
    cells carry the comparison's watermark, if any."""
    name = "ΔAUROC" if metric == "auroc" else f"Δ{metric}"
    head = ["Method (scorer) − CE control", *[f"{s} {name}" for s in ood_sets], f"average {name}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in compare.metric_rows(comparison, metric, ood_sets)]
    return "\n".join(lines) + "\n"


def check_comparison(comparison: pd.DataFrame, methods: Mapping[str, tuple[str, str]], control: str,
                     seeds: Sequence[int], source: str) -> None:
    """Refuse a comparison table that does not match the config: a method missing or not asked for,
    or another number of seeds (it was made from an older configuration)."""
    wanted = [v for v in methods if v != control]
    have = list(dict.fromkeys(comparison["method"]))
    n = set(comparison["n_seeds"].astype(int))
    if set(wanted) != set(have) or n != {len(seeds)}:
        raise IntegrityError(f"{source} compares {have} over {sorted(n)} seed(s); the config asks for {wanted} over "
                         f"{len(seeds)}. Rebuild it: snakemake {source}")


def results_block(tidy: pd.DataFrame, comparison: pd.DataFrame, *, bench: str, methods: Mapping[str, tuple[str, str]],
                  ood_sets: Sequence[str], origin: str, command: str, level: float = 0.95,
                  comparison_path: str | None = None) -> str:
    seeds, wm = tidy["seed"].nunique(), watermark_of(tidy)
    mark = f"**{wm}**\n\n" if wm else ""
    source = comparison_path or compare.RELATIVE.format(bench=bench, ext="csv")
    one = " With one seed every interval covers the test images only." if seeds == 1 else ""
    return (f"{START}\n{mark}_Generated by `{command}` from `results/{bench}/metrics_all.csv` and `{source}` "
            f"({seeds} seeds; {origin}). Numbers from another CPU differ slightly._\n\n"
            f"Mean over seeds ± half-width of its {level:.0%} interval over seeds and test images "
            f"(docs/statistics.md).{one}\n\n"
            f"{methods_table(tidy, methods, ood_sets, level)}\n"
            f"Against the CE control: {compare.rule_sentence(comparison)}.\n\n"
            f"{control_table(comparison, ood_sets)}{END}")


def replace_block(text: str, block: str, where: str) -> str:
    from ..io import replace_marked

    return replace_marked(text, block, START, END, where, "the results")


def figure_copies(text: str, target, name: str) -> list:
    """Where a Markdown page (``target``, its ``text``) shows the image file ``name`` (``![...](dir/name)``,
    relative to the page): the copies of a run's figure that ``lffood results --write`` refreshes with
    the block, so that the page's figure and its numbers come from one run."""
    import re
    from pathlib import Path

    base = Path(target).parent
    return [base / m for m in dict.fromkeys(re.findall(r"!\[[^\]]*\]\(([^)\s]*/" + re.escape(name) + r")\)", text))]
