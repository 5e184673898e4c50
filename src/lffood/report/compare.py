"""Every method against the CE control, paired on the same test images: ``results/tables/<bench>_vs_control.csv``.

For one benchmark, every variant but the control (config ``tables.control``) is compared with the
control per OOD set and on the average over OOD sets, on AUROC and FPR95: per training seed the
difference metric(method) − metric(control) on the full test sets (both are fine-tuned from the same
CE model of that seed, and scored on the same images), then :func:`lffood.stats.paired` over seeds,
with the test-set variance from joint bootstrap resamples (the same images for every seed and both
models; on the average, the same ID images for every OOD set). The verdict is
:func:`lffood.stats.verdict`: 'win' / 'loss' only when the interval excludes 0.

Which scorer: the method's own (variant ``scorer``); the control is scored with the same scorer when
it applies to the control, else with the control's own (e.g. SSOD's score needs its OOD head, which
the control lacks): :func:`comparisons`, the one place that decides it.

The CSV (percent, like every table; sealed with the score files' hashes, :mod:`lffood.integrity`) is
what ``lffood results`` reads for the README: one computation of the intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# pandas (and the table helpers, which import it) are imported where used: the Snakefile imports this
# module at parse time for RELATIVE and comparisons(), and every Snakemake start would pay for pandas
AVERAGE = "average"  # as lffood.report.tables.AVERAGE

#: the comparison tables, relative to results_dir (the workflow's P.compare and lffood results use it)
RELATIVE = "tables/{bench}_vs_control.{ext}"
#: the metrics compared
COMPARED = ("auroc", "fpr95")
COLUMNS = ["method", "label", "scorer", "control_scorer", "metric", "ood_set", "n_seeds", "diff", "ci_low", "ci_high",
           "df", "se_seeds", "se_test", "verdict", "seeds_in_interval", "level", "bootstrap"]


class Comparison(NamedTuple):
    method: str
    label: str
    scorer: str
    control_scorer: str


def comparisons(bench: Mapping, control: str) -> list[Comparison]:
    """Every variant of ``bench`` but ``control`` (config order), with the scorer each side is scored
    with: the method's own, and for the control the same where it applies to the control, else the
    control's own. Empty when the benchmark has no ``control`` variant."""
    from ..variants import variant, variant_names, variant_scorers

    names = variant_names(bench)
    if control not in names:
        return []
    applies, own = set(variant_scorers(bench, control)), variant(bench, control)["scorer"]
    out = []
    for name in names:
        if name == control:
            continue
        v = variant(bench, name)
        out.append(Comparison(name, v["label"], v["scorer"], v["scorer"] if v["scorer"] in applies else own))
    return out


def needed(comps: Sequence[Comparison], control: str) -> list[tuple[str, str]]:
    """The (variant, scorer) score files the comparisons read, once each."""
    pairs = [(c.method, c.scorer) for c in comps] + [(control, c.control_scorer) for c in comps]
    return list(dict.fromkeys(pairs))


def compare(score_files: Mapping[tuple[str, str, int], str], comps: Sequence[Comparison], *, control: str,
            seeds: Sequence[int], ood_sets: Sequence[str], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
            compared: Sequence[str] = COMPARED) -> pd.DataFrame:
    """The comparison table (:data:`COLUMNS`; percentages) from the score files ``(variant, scorer,
    seed) -> path`` (:func:`needed` x ``seeds``)."""
    import pandas as pd

    from .. import h5schema, metrics, stats

    scores = {}
    for key, path in score_files.items():
        scores[key], _ = h5schema.read_scores(path)  # verified against its manifest
    point = {key: {o: metrics.ood_metrics(s["test"], s[o]) for o in ood_sets} for key, s in scores.items()}
    boot = stats.bootstrap(scores, ood_sets, n_boot=n_boot, seed=seed, which=compared)
    rows = []
    for c in comps:
        a = [(c.method, c.scorer, s) for s in seeds]
        b = [(control, c.control_scorer, s) for s in seeds]
        for m in compared:
            # per OOD set: differences per seed (n,) and per seed and joint resample (n, B), in percent
            delta = {o: 100 * np.array([point[x][o][m] - point[y][o][m] for x, y in zip(a, b)]) for o in ood_sets}
            resampled = {o: 100 * np.stack([boot[x][o][m] - boot[y][o][m] for x, y in zip(a, b)]) for o in ood_sets}
            delta[AVERAGE] = np.mean([delta[o] for o in ood_sets], axis=0)
            resampled[AVERAGE] = np.mean([resampled[o] for o in ood_sets], axis=0)
            for o in [*ood_sets, AVERAGE]:
                iv = stats.paired(delta[o], resampled[o], level)
                rows.append({"method": c.method, "label": c.label, "scorer": c.scorer,
                             "control_scorer": c.control_scorer, "metric": m, "ood_set": o, "n_seeds": iv.n_seeds,
                             "diff": iv.estimate, "ci_low": iv.low, "ci_high": iv.high, "df": iv.df,
                             "se_seeds": iv.se_seeds, "se_test": iv.se_test,
                             "verdict": stats.metric_verdict(iv, m), "seeds_in_interval": iv.seeds_known,
                             "level": level, "bootstrap": n_boot})
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- rendering
def signed(x: float, digits: int = 1) -> str:
    """``+1.2`` / ``−0.3`` (a true minus sign, as the tables print differences)."""
    return f"{x:+.{digits}f}".replace("-", "−")


def cell_text(row: Mapping, digits: int = 1) -> str:
    """One comparison as ``+1.2 [−0.3, +2.7] tie``."""
    return (f"{signed(row['diff'], digits)} [{signed(row['ci_low'], digits)}, {signed(row['ci_high'], digits)}] "
            f"{row['verdict']}")


def rule_sentence(table: pd.DataFrame) -> str:
    """The rule in one line, with what the intervals cover (test images only with one seed)."""
    level = float(table["level"].iloc[0]) if len(table) else 0.95
    n = int(table["n_seeds"].max()) if len(table) else 0
    what = (f"over {n} seeds and the test images" if n > 1 else
            "over the test images only: with one seed the spread over seeds is unknown and not in the interval")
    return (f"method − control, paired per seed on the same images; {level:.0%} interval {what}; win / loss only "
            "when the interval excludes 0 (FPR95: lower is better), else tie (docs/statistics.md)")


def row_name(c: Mapping) -> str:
    from .tables import scorer_label

    name = f"{c['label']} ({scorer_label(c['scorer'])})"
    return name if c["control_scorer"] == c["scorer"] else f"{name} vs control ({scorer_label(c['control_scorer'])})"


def markdown(table: pd.DataFrame, ood_sets: Sequence[str], title: str, compared: Sequence[str] = COMPARED) -> str:
    """One Markdown table per metric: a row per method, a column per OOD set and the average, cells
    ``diff [low, high] verdict``; every cell carries the table's watermark, if any."""
    from .tables import METRIC_NAMES, stamp, watermark_of

    wm = watermark_of(table)
    lines = [f"# {stamp(title, wm)}", "", f"Percentage points; {rule_sentence(table)}. "
             f"{int(table['bootstrap'].iloc[0]) if len(table) else 0} bootstrap resamples.", ""]
    sets = [*ood_sets, AVERAGE]
    for m in compared:
        lines += [f"## Δ{METRIC_NAMES[m]}", "", "| " + " | ".join(["Method (scorer) − control", *sets]) + " |",
                  "|" + "---|" * (len(sets) + 1)]
        lines += ["| " + " | ".join(row) + " |" for row in metric_rows(table, m, ood_sets)]
        lines.append("")
    return "\n".join(lines)


def metric_rows(table: pd.DataFrame, metric: str, ood_sets: Sequence[str]) -> list[list[str]]:
    """The rows of one metric's comparison, in the table's method order: the method's name
    (:func:`row_name`), then per OOD set and the average ``diff [low, high] verdict`` ('–' where
    missing), each stamped with the table's watermark: the comparison's Markdown and the README's
    results block render the same cells."""
    from .tables import stamp, watermark_of

    wm, sets = watermark_of(table), [*ood_sets, AVERAGE]
    rows = []
    for _, grp in table[table["metric"] == metric].groupby("method", sort=False):
        by_set = grp.set_index("ood_set")
        rows.append([row_name(grp.iloc[0]),
                     *(stamp(cell_text(by_set.loc[s]), wm) if s in by_set.index else "–" for s in sets)])
    return rows


def write_comparison(score_files: Mapping[tuple[str, str, int], str], comps: Sequence[Comparison], *, csv: str,
                     md: str, control: str, seeds: Sequence[int], ood_sets: Sequence[str], title: str,
                     n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                     watermark: str | None = None) -> pd.DataFrame:
    """:func:`compare`, written as the CSV (sealed: ``lffood results`` verifies it and the score files
    behind it) and its Markdown; ``watermark`` on every row and cell."""
    from ..integrity import sealed_path
    from ..io import atomic_path
    from .tables import watermarked

    table = watermarked(compare(score_files, comps, control=control, seeds=seeds, ood_sets=ood_sets, n_boot=n_boot,
                                seed=seed, level=level), watermark)
    with sealed_path(csv, inputs=list(score_files.values())) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, ood_sets, title))
    return table


def read_comparison(path: str) -> pd.DataFrame:
    """A comparison CSV, verified (its bytes, and the score files it was made from unchanged since)."""
    import pandas as pd

    from ..integrity import verify

    verify(path)
    table = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        from ..errors import IntegrityError
        from ..integrity import rebuild_hint

        raise IntegrityError(f"{path}: not a comparison table (no column(s) {missing}). {rebuild_hint(path)}")
    return table
