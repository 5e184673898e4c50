"""The README's results, generated from the results (``lffood results``), never typed by hand.

For one benchmark it reads the tidy per-seed metrics (``results/<bench>/metrics_all.csv``, percent)
and the benchmark's variants from the config, and renders Markdown:

* every method (variant) with its own scorer: AUROC per OOD set and on average, FPR95, ID accuracy
  (mean ± std over seeds);
* every method against the CE control, per OOD set: the paired difference of AUROC over seeds
  (both are fine-tuned from the same CE model per seed), scored with the method's scorer, or with
  the control's own scorer where the method's needs outputs the control lacks (SSOD's OOD head).
  A difference counts as a win (loss) when its mean is above (below) zero by more than one standard
  deviation of the paired differences, otherwise as a tie: with two or three seeds this is a
  reading aid, not a significance test.

A header names the commit, the machine and the date the numbers came from, so they cannot silently
go stale: ``lffood results --write README.md`` replaces the block between the README's markers.
Metrics that carry a watermark (config ``watermark``) keep it: on the header and on every cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .tables import AVERAGE, mean_std, scorer_label, seed_std, stamp, watermark_of

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _with_average(tidy: pd.DataFrame) -> pd.DataFrame:
    avg = tidy.groupby(["variant", "scorer", "seed"], as_index=False)[["auroc", "fpr95", "id_acc"]].mean()
    return pd.concat([tidy, avg.assign(ood_set=AVERAGE)], ignore_index=True)


def _cell(values: pd.Series, watermark: str | None = None) -> str:
    return stamp(mean_std(values.mean(), seed_std(values)), watermark)


def methods_table(tidy: pd.DataFrame, methods: Mapping[str, tuple[str, str]], ood_sets: Sequence[str]) -> str:
    """Markdown: one row per method (label, its own scorer), AUROC per OOD set and average, average
    FPR95 and ID accuracy, mean ± std over seeds; the cells carry the metrics' watermark, if any."""
    full, wm = _with_average(tidy), watermark_of(tidy)
    head = ["Method", "Scorer", *[f"{s} AUROC" for s in ood_sets], "average AUROC", "average FPR95", "ID acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, (label, scorer) in methods.items():
        sel = full[(full["variant"] == v) & (full["scorer"] == scorer)]
        if sel.empty:
            continue
        by_set = {s: sel[sel["ood_set"] == s] for s in [*ood_sets, AVERAGE]}
        values = [*(by_set[s]["auroc"] for s in [*ood_sets, AVERAGE]), by_set[AVERAGE]["fpr95"],
                  by_set[AVERAGE]["id_acc"]]
        lines.append("| " + " | ".join([label, scorer_label(scorer), *(_cell(x, wm) for x in values)]) + " |")
    return "\n".join(lines) + "\n"


def paired_differences(tidy: pd.DataFrame, method: str, scorer: str, control: str, control_scorer: str,
                       ood_sets: Sequence[str]) -> dict[str, np.ndarray]:
    """Per OOD set (and average): AUROC(method, scorer) - AUROC(control, control_scorer), per seed."""
    full = _with_average(tidy)
    out = {}
    for s in [*ood_sets, AVERAGE]:
        a = full[(full["variant"] == method) & (full["scorer"] == scorer) & (full["ood_set"] == s)].set_index("seed")
        b = full[(full["variant"] == control) & (full["scorer"] == control_scorer) & (full["ood_set"] == s)]
        seeds = a.index.intersection(b.set_index("seed").index)
        out[s] = (a.loc[seeds, "auroc"] - b.set_index("seed").loc[seeds, "auroc"]).to_numpy(dtype=float)
    return out


def verdict(diff: np.ndarray) -> str:
    """'win', 'loss' or 'tie' of a paired difference (module docstring)."""
    if len(diff) == 0:
        return "–"
    mean, std = diff.mean(), seed_std(diff)
    if mean - std > 0:
        return "win"
    if mean + std < 0:
        return "loss"
    return "tie"


def control_table(tidy: pd.DataFrame, methods: Mapping[str, tuple[str, str]], control: str,
                  ood_sets: Sequence[str]) -> str:
    """Markdown: every method but the control against the control, paired AUROC difference per OOD
    set (mean ± std over seeds) and its verdict; the cells carry the metrics' watermark, if any."""
    wm = watermark_of(tidy)
    scorers = set(tidy[tidy["variant"] == control]["scorer"])
    head = ["Method (scorer) − CE control", *[f"{s} ΔAUROC" for s in ood_sets], "average ΔAUROC"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, (label, scorer) in methods.items():
        if v == control:
            continue
        ref = scorer if scorer in scorers else methods[control][1]
        diffs = paired_differences(tidy, v, scorer, control, ref, ood_sets)
        if not len(diffs[AVERAGE]):
            continue
        cells = []
        for s in [*ood_sets, AVERAGE]:
            d = diffs[s]
            cells.append(stamp(f"{mean_std(d.mean(), seed_std(d), signed=True)} ({verdict(d)})", wm))
        name = f"{label} ({scorer_label(scorer)})" + ("" if ref == scorer else f" vs control ({scorer_label(ref)})")
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def results_block(tidy: pd.DataFrame, *, bench: str, methods: Mapping[str, tuple[str, str]], control: str,
                  ood_sets: Sequence[str], origin: str, command: str) -> str:
    seeds, wm = tidy["seed"].nunique(), watermark_of(tidy)
    mark = f"**{wm}**\n\n" if wm else ""
    return (f"{START}\n{mark}_Generated by `{command}` from `results/{bench}/metrics_all.csv` ({seeds} seeds; "
            f"{origin}). Numbers from another CPU differ slightly._\n\n"
            f"{methods_table(tidy, methods, ood_sets)}\n"
            "Against the CE control (paired over seeds: each method and the control start from the same CE "
            "model; win / loss = the mean difference is more than one standard deviation above / below 0):\n\n"
            f"{control_table(tidy, methods, control, ood_sets)}{END}")


def replace_block(text: str, block: str, where: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"{where} has no {START} ... {END} markers: add them where the results belong")
    a, b = text.index(START), text.index(END) + len(END)
    return text[:a] + block + text[b:]
