"""The paper's Tables I-IV, reproduced and side by side with the paper's printed numbers
(``results/tables/tableN.{csv,md,tex}``), and the same table shapes for any one benchmark without
the paper column (``results/tables/<bench>_table1``, ``<bench>_table4``).

Rows follow the paper's printed order (``src/lffood/resources/paper/lff_tables.csv``, :mod:`.paper_numbers`)
and come from the configuration: each printed post-hoc method is that scorer on the ``baseline``
variant (the paper's CE model); "Ours" is the ``ours`` variant with its own scorer (LFF with the
energy score and ReAct); a printed training method that a variant reproduces (matched by its label:
CSI, SSD+, VOS, LogitNorm, NPOS, CIDER in config.yaml) is that variant with its scorer; a printed
training method without one (TagFog, whose CLIP text anchors this workflow cannot fetch offline) is
shown as a **paper-reported** row. Rows the paper lacks are added and marked: KNN (after ViM), and
before "Ours" the CE control (fine-tuned with LFF's schedule and the CE objective, which separates
LFF's gain from the gain of training longer) and every other variant (SSOD, MODE-F, CSI's stage 1).
Table IV pairs each of its scorers on the baseline, the control and ours.

Every reproduced cell is in the tables' one cell format (:func:`lffood.report.tables.cell`): the mean
over seeds (per-seed average over OOD sets first) ± the half-width of its 95% interval (seeds and test
set combined, :mod:`lffood.stats`; the seeds' standard deviation where the metrics carry no standard
errors), in percent with one decimal; beside it the paper's value as printed (two decimals) and the
difference (reproduced - printed, one decimal). A column that says the same on every row is left out
of the Markdown, LaTeX and HTML (the note says what it held): the ``Source`` of a table whose rows
are all reproduced, e.g. a benchmark's shape without the paper column, whose note instead names the
rows the paper's table lacks.
Marks: among the reproduced rows of a column the best mean is bold and the second underlined (FPR95:
lowest best); the paper's values keep the paper's own bold/underline. A printed value that
``src/lffood/resources/paper/lff_tables.csv`` flags as inconsistent as printed (e.g. an average that is not the
mean of its row) carries a footnote letter in every format, its difference reads "Δ vs printed",
and the note under the table says what is wrong and, for an average, gives the mean of the row's
printed per-OOD-set values (and the reproduced value's difference to it); the CSV has the same in
``<cell>_paper_flag``, ``_paper_note``, ``_paper_mean_of_row``, ``_diff_vs_printed`` and
``_diff_vs_mean_of_row``. A printed row with the paper's dagger (TagFog†: an additional fake OOD
dataset) keeps it in its label, with the paper's note under the table. A watermark (config
``watermark``) marks what was reproduced, never the paper's numbers: the reproduced rows of the CSV,
the cells' reproduced values (their difference to the paper follows them), a note's reproduced
difference and the title.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..io import atomic_path
from ..scorers import paper_scorers, scorer_class, scorer_names
from . import latex
from .paper_numbers import POSTHOC_SCORERS, TRAINING_METHODS, flag_note, mean_of_row
from .tables import (AVERAGE, HALF_WIDTH, LEVEL, METRIC_NAMES, cell_spread, collect, complete_se, mean_std, number,
                     scorer_label,
                     scorer_table, spread_note, stamp, watermarked)

#: Post-hoc scorers on the baseline that the tables add to the paper's (not in the paper).
EXTRA_POSTHOC = ("knn",)
#: The post-hoc rows, ``(label, scorer)`` in table order, both from the scorer registry
#: (:mod:`lffood.scorers`: label, ``order``, ``in_paper``): the paper's (Table I) and, after ViM, KNN.
POSTHOC = tuple((scorer_class(s).label, s) for s in scorer_names() if s in paper_scorers() or s in EXTRA_POSTHOC)
#: Table IV's scorers, in the paper's order (labels from the registry).
TABLE4 = tuple((scorer_class(s).label, s) for s in ("msp", "energy", "odin", "react", "featurenorm"))
LAYOUT = {"table1": "per_ood", "table2": "average", "table3": "per_ood", "table4": "average"}
TITLES = {
    "table1": "Table I: post-hoc scorers, training methods and LFF per OOD set",
    "table2": "Table II: averages over the OOD sets",
    "table3": "Table III: post-hoc scorers, training methods and LFF per OOD set",
    "table4": "Table IV: post-hoc scorers with and without LFF (averages over the OOD sets)",
}
METRICS = ("fpr95", "auroc")
HIGHER = {"fpr95": False, "auroc": True}
REPRODUCED, PAPER_ONLY, NOT_IN_PAPER = "reproduced", "paper-reported", "reproduced (not in the paper)"
#: The paper's dagger (Table I caption: "† indicates an additional fake OOD dataset is used"), kept on
#: the printed rows with ``extra_data`` (TagFog) and explained under the table (:data:`DAGGER_NOTE`).
DAGGER = "†"
DAGGER_NOTE = ("† As in the paper: an additional fake OOD dataset is used (TagFog trains with Jigsaw-shuffled ID "
               "images as an extra fake-OOD class).")
DAGGER_NOT_TRAINED = (" Paper-reported, not trained here: TagFog's text anchors are CLIP ViT-L/14 text embeddings, "
                      "whose weights this workflow does not have and cannot fetch offline.")


class Row(NamedTuple):
    method: str  # as the table prints it
    variant: str | None  # None: a paper-reported row
    scorer: str | None
    paper: str | None  # the paper's printed method name; None: not in the paper


class Method(NamedTuple):
    """A variant as the tables show it: its label and its own scorer (config ``variants.<v>``)."""

    label: str
    scorer: str


def _printed_names(table: str, paper: pd.DataFrame | None) -> list[str]:
    """The paper's printed methods of ``table`` in order; without the paper, Table I's order (the
    post-hoc scorers, the training methods, "Ours"), so that a benchmark's shape still knows which of
    its rows the paper's table has (a variant labelled LogitNorm is the paper's LogitNorm row)."""
    if paper is not None:
        names = list(dict.fromkeys(paper[paper["table"] == table]["method"]))
        if names:
            return names
    if table == "table4":
        return [n for label, _ in TABLE4 for n in (label, f"{label}+Ours")]
    return [label for label, s in POSTHOC if s not in EXTRA_POSTHOC] + list(TRAINING_METHODS) + ["Ours"]


def _extras_after(scorer: str) -> list[tuple[str, str]]:
    """The added post-hoc rows (:data:`EXTRA_POSTHOC`) that follow the paper's ``scorer`` in table order."""
    i = [s for _, s in POSTHOC].index(scorer)
    out = []
    for label, s in POSTHOC[i + 1:]:
        if s not in EXTRA_POSTHOC:
            break
        out.append((label, s))
    return out


def rows(table: str, methods: Mapping[str, Method], roles: Mapping[str, str],
         paper: pd.DataFrame | None = None) -> list[Row]:
    """The rows of ``table``: ``methods`` are the variants in config order, ``roles`` map ``baseline``,
    ``control`` and ``ours`` to variant names (config ``tables``); ``paper`` the printed numbers
    (:func:`lffood.report.paper_numbers.load`), or None for a table without the paper column."""
    if table not in LAYOUT:
        raise KeyError(f"unknown paper table '{table}'; known: {sorted(LAYOUT)}")
    base, control, ours = roles["baseline"], roles["control"], roles["ours"]
    printed = _printed_names(table, paper)
    daggers = set(paper.loc[paper["extra_data"].astype(bool), "method"]) if paper is not None else set()
    if table == "table4":
        out = []
        for name in printed:
            if name.endswith("+Ours"):
                continue
            s = POSTHOC_SCORERS[name]
            out.append(Row(name, base, s, name))
            if control in methods:
                out.append(Row(f"{name} ({methods[control].label})", control, s, None))
            out.append(Row(f"{name}+Ours", ours, s, f"{name}+Ours"))
        return out
    by_label = {m.label: v for v, m in methods.items()}
    used = {base, ours}
    out = []
    for name in printed:
        if name in POSTHOC_SCORERS:
            out.append(Row(name, base, POSTHOC_SCORERS[name], name))
            out += [Row(label, base, s, None) for label, s in _extras_after(POSTHOC_SCORERS[name])]
        elif name in TRAINING_METHODS or name.startswith("TagFog"):
            v = by_label.get(name)
            shown = f"{name}{DAGGER}" if name in daggers else name  # TagFog† keeps the paper's dagger
            if v is not None:
                used.add(v)
                out.append(Row(f"{shown} ({scorer_label(methods[v].scorer)})", v, methods[v].scorer, name))
            elif paper is not None:  # a paper-reported row: only beside the paper's numbers
                out.append(Row(shown, None, None, name))
        elif name == "Ours":
            for v, m in methods.items():
                if v not in used:
                    used.add(v)
                    out.append(Row(f"{m.label} ({scorer_label(m.scorer)})", v, m.scorer, None))
            if ours in methods:
                m = methods[ours]
                out.append(Row(f"Ours ({m.label} + {scorer_label(m.scorer)})", ours, m.scorer, "Ours"))
    return out


class PaperCell(NamedTuple):
    value: float  # as printed; NaN: not printed
    mark: str  # the paper's bold / underline
    flag: str  # src/lffood/resources/paper/lff_tables.csv's flag(s): inconsistent as printed
    note: str  # what the flag means for this cell (:func:`lffood.report.paper_numbers.flag_note`)
    mean_of_row: float  # an Average cell: the mean of its row's printed per-OOD-set values; else NaN


NO_CELL = PaperCell(np.nan, "", "", "", np.nan)


def _paper_index(paper: pd.DataFrame | None) -> dict:
    if paper is None:
        return {}
    return {(r.table, r.benchmark, r.method, r.ood_set, r.metric): r for r in paper.itertuples(index=False)}


def _paper_cell(paper: pd.DataFrame | None, index: Mapping, table: str, bench: str, method: str | None,
                ood_set: str, metric: str) -> PaperCell:
    hit = index.get((table, bench, method, ood_set, metric)) if method is not None else None
    if hit is None:
        return NO_CELL
    mark = str(hit.mark) if pd.notna(hit.mark) else ""
    flag = str(hit.flag) if pd.notna(hit.flag) else ""
    note = flag_note(paper, table, bench, method, ood_set, metric) if flag else ""
    mean = mean_of_row(paper, table, bench, method, metric) if ood_set == AVERAGE else None
    return PaperCell(float(hit.value), mark, flag, note, np.nan if mean is None else round(mean, 3))


def _cells(wide: pd.DataFrame, row: Row, sets: Sequence[str], prefix: str, *, table: str, bench: str,
           paper: pd.DataFrame | None, index: Mapping) -> dict:
    out = {}
    have = row.variant is not None and (row.scorer, row.variant) in wide.index
    r = wide.loc[(row.scorer, row.variant)] if have else None
    for s in sets:
        for m in METRICS:
            key = f"{prefix}{s}/{m}"
            mean = r[f"{s}/{m}_mean"] if have else np.nan
            out[f"{key}_mean"] = mean
            out[f"{key}_std"] = r[f"{s}/{m}_std"] if have else np.nan
            if f"{s}/{m}{HALF_WIDTH}" in wide.columns:
                out[f"{key}{HALF_WIDTH}"] = r[f"{s}/{m}{HALF_WIDTH}"] if have else np.nan
            cell = _paper_cell(paper, index, table, bench, row.paper, s, m)
            out[f"{key}_paper"], out[f"{key}_paper_mark"] = cell.value, cell.mark
            out[f"{key}_paper_flag"], out[f"{key}_paper_note"] = cell.flag, cell.note
            if s == AVERAGE:
                out[f"{key}_paper_mean_of_row"] = cell.mean_of_row
            # the difference to the value as printed, also where it is flagged (then the note gives the row mean)
            out[f"{key}_diff_vs_printed"] = round(mean - cell.value, 3) if have and not np.isnan(cell.value) else np.nan
            if s == AVERAGE:
                out[f"{key}_diff_vs_mean_of_row"] = (round(mean - cell.mean_of_row, 3)
                                                     if have and not np.isnan(cell.mean_of_row) else np.nan)
    out["n_seeds"] = int(r["n_seeds"]) if have else 0
    return out


def _source(row: Row, found: bool) -> str:
    if row.variant is None:
        return PAPER_ONLY
    if not found:
        return "not run"
    return REPRODUCED if row.paper is not None else NOT_IN_PAPER


def _row_note(row: Row, source: str) -> str:
    """The note a row's label points to: the paper's dagger (:data:`DAGGER_NOTE`), or ""."""
    if DAGGER not in row.method:
        return ""
    trained_here = source != PAPER_ONLY or not (row.paper or "").startswith("TagFog")
    return DAGGER_NOTE + ("" if trained_here else DAGGER_NOT_TRAINED)


def build(table: str, tidy: Mapping[str, pd.DataFrame], ood_sets: Mapping[str, Sequence[str]],
          methods: Mapping[str, Method], roles: Mapping[str, str], paper: pd.DataFrame | None = None,
          level: float = LEVEL) -> pd.DataFrame:
    """``tidy[bench]``: per-seed metrics (:func:`lffood.report.tables.collect`, percent); ``ood_sets[bench]``:
    its OOD sets in column order; ``level``: the cells' intervals'. A reproduced row whose scorer or
    variant a benchmark did not run is left out of a per-OOD table and has empty cells in an average
    table."""
    records = []
    index = _paper_index(paper)
    tidy = dict(zip(tidy, complete_se(*tidy.values())))  # one kind of spread per metric throughout the table
    if LAYOUT[table] == "per_ood":
        for b, df in tidy.items():
            sets = [*ood_sets[b], AVERAGE]
            wide = scorer_table(df, ood_order=sets, metrics=METRICS, level=level).set_index(["scorer", "variant"])
            for r in rows(table, methods, roles, paper):
                found = r.variant is not None and (r.scorer, r.variant) in wide.index
                if not found and (paper is None or r.paper is None):
                    continue  # a scorer or variant this benchmark does not run, and no printed row either
                source = _source(r, found)
                records.append({"benchmark": b, **r._asdict(), "source": source, "row_note": _row_note(r, source),
                                **_cells(wide, r, sets, "", table=table, bench=b, paper=paper, index=index)})
    else:
        wides = {b: scorer_table(df, ood_order=[AVERAGE], metrics=METRICS, level=level).set_index(["scorer", "variant"])
                 for b, df in tidy.items()}
        for r in rows(table, methods, roles, paper):
            rec = {**r._asdict()}
            found = False
            n_seeds = 0
            for b, wide in wides.items():
                cells = _cells(wide, r, [AVERAGE], f"{b}/", table=table, bench=b, paper=paper, index=index)
                n_seeds = max(n_seeds, cells.pop("n_seeds"))
                rec.update(cells)
                found |= r.variant is not None and (r.scorer, r.variant) in wide.index
            if found or (paper is not None and r.paper is not None):
                source = _source(r, found)
                records.append({**rec, "source": source, "row_note": _row_note(r, source), "n_seeds": n_seeds})
    return _mark_best(pd.DataFrame(records))


def _mark_best(df: pd.DataFrame) -> pd.DataFrame:
    """``<col>_mark``: bold for the best reproduced mean of each column (per benchmark block), underline
    for the second (ties share the mark)."""
    if df.empty:
        return df
    groups = df.groupby("benchmark", sort=False) if "benchmark" in df else [(None, df)]
    marks = {}
    for _, g in groups:
        for col in [c for c in df.columns if c.endswith("_mean")]:
            metric = col.rsplit("/", 1)[1].removesuffix("_mean")
            vals = g[col].dropna()
            ranked = sorted(set(vals.round(3)), reverse=HIGHER[metric])
            for i, v in vals.round(3).items():
                marks.setdefault(col.removesuffix("_mean") + "_mark", {})[i] = (
                    "bold" if ranked and v == ranked[0] else "underline" if len(ranked) > 1 and v == ranked[1] else "")
    for col, values in marks.items():
        df[col] = pd.Series(values).reindex(df.index).fillna("")
    return df


# ----------------------------------------------------------------------------- rendering
def _md_mark(text: str, how: str) -> str:
    return f"**{text}**" if how == "bold" else f"<u>{text}</u>" if how == "underline" else text


def _sup(letter: str, md: bool) -> str:
    """A footnote mark: HTML's ``<sup>`` in Markdown (and so in the HTML page), ``\\textsuperscript`` in LaTeX."""
    return f"<sup>{letter}</sup>" if md else latex.footnote_mark(letter)


def _cell_text(r: pd.Series, key: str, md: bool, watermark: str | None = None, letter: str = "") -> str:
    """The reproduced value in the tables' one cell format (:func:`lffood.report.tables.mean_std` with
    :func:`~lffood.report.tables.cell_spread`; after ``watermark``, in the cell's format already), then
    the paper's as printed, with the footnote ``letter`` of a flagged printed value, and "Δ vs printed"
    (one decimal, as the reproduced value)."""
    mean, paper = r.get(f"{key}_mean"), r.get(f"{key}_paper")
    fmt = _md_mark if md else (lambda t, h: latex.mark(t, h))
    parts = []
    if pd.notna(mean):
        ours = mean_std(mean, cell_spread(r, key))
        parts.append(stamp(fmt(ours if md else latex.escape(ours), r.get(f"{key}_mark", "")), watermark))
    if pd.notna(paper):
        p = fmt(f"{paper:.2f}", r.get(f"{key}_paper_mark", "")) + (_sup(letter, md) if letter else "")
        diff = r.get(f"{key}_diff_vs_printed")
        delta = ("Δ" if md else r"$\Delta$") + (" vs printed" if letter else "")
        d = "" if pd.isna(diff) else f"; {delta} {number(diff, signed=True)}"
        parts.append(f"(paper {p}{d})")
    return " ".join(parts) if parts else ("–" if md else "--")


def _column_keys(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]], bench: str | None):
    if LAYOUT[table] == "per_ood":
        return [(f"{s}/{m}", f"{s} {METRIC_NAMES[m]}") for s in [*ood_sets[bench], AVERAGE] for m in METRICS]
    return [(f"{b}/{AVERAGE}/{m}", f"{b} {METRIC_NAMES[m]}") for b in ood_sets for m in METRICS]


def _blocks(table: str, df: pd.DataFrame):
    if LAYOUT[table] == "per_ood":
        return list(df.groupby("benchmark", sort=False))
    return [(None, df)]


def _letter(i: int) -> str:
    """Footnote letters a, b, ..., z, aa, ab, ..."""
    return chr(97 + i) if i < 26 else _letter(i // 26 - 1) + chr(97 + i % 26)


class Footnote(NamedTuple):
    letter: str
    text: str  # the paper's side: which cell, what is inconsistent, the row's own mean
    reproduced: str  # the reproduced value's difference to the row mean ("" without one): watermarked


def _footnotes(grp: pd.DataFrame, cols, bench: str | None, start: int) -> tuple[dict, list[Footnote]]:
    """The footnote letters of a block's flagged printed values, numbered from ``start`` (letters run
    on through a file's blocks), as {(row index, column key): letter}, and their notes in order."""
    letters, notes = {}, []
    for i, r in grp.iterrows():
        for key, _ in cols:
            note = r.get(f"{key}_paper_note")
            if not isinstance(note, str) or not note or pd.isna(r.get(f"{key}_paper")):
                continue
            letter = _letter(start + len(notes))
            letters[(i, key)] = letter
            parts = key.split("/")
            b, ood_set, metric = (bench, *parts) if len(parts) == 2 else parts
            column = f"{'Average' if ood_set == AVERAGE else ood_set} {METRIC_NAMES[metric]}"
            where = f"{b}, {r['paper'] or r['method']}, {column}"
            text = f"{where}: {note}."
            reproduced = ""
            if pd.notna(r.get(f"{key}_diff_vs_printed")):
                text += " The table's Δ compares with the printed value"
                dm = r.get(f"{key}_diff_vs_mean_of_row")
                reproduced = f"reproduced − row mean {number(dm, signed=True)}" if pd.notna(dm) else ""
                text += "; " if reproduced else "."
            notes.append(Footnote(letter, text, reproduced))
    return letters, notes


def _note_lines(notes: Sequence[Footnote], row_notes: Sequence[str], md: bool, watermark: str | None) -> list[str]:
    """The notes under one table: each flagged value's, then each row note (the dagger's), once."""
    out = []
    for n in notes:
        reproduced = (stamp(n.reproduced, watermark) + ".") if n.reproduced else ""
        out.append(f"{_sup(n.letter, True)} {n.text}{reproduced}" if md else
                   f"{_sup(n.letter, False)}~{latex.escape(n.text + reproduced)}")
    for text in dict.fromkeys(t for t in row_notes if isinstance(t, str) and t):
        out.append(text if md else latex.escape(text))
    return out


PAPER_NOTE = ("Beside each reproduced value: (paper: the value as printed; Δ = reproduced − printed). Bold / "
              "underlined: best / second-best reproduced value of the column, and the paper's own marks on its values. "
              "A letter on a printed value marks a cell that is inconsistent as printed "
              "(src/lffood/resources/paper/README.md); its Δ reads 'Δ vs printed', and its note under the table "
              "gives, for an average, the mean of the row's printed per-OOD-set values. Rows marked paper-reported are "
              "the paper's numbers of methods this workflow does not train; 'not run': a printed row whose scorer the "
              "benchmark does not run; 'not in the paper': reproduced only.")
SHAPE_NOTE = ("The paper's {name} layout, without the paper's numbers (those are in results/tables/table1 ... table4). "
              "Bold / underlined: best / second-best mean of the column. The primary table of this benchmark is "
              "{bench} (each method with its own scorer, all four metrics).")


def _has_paper(df: pd.DataFrame) -> bool:
    return any(c.endswith("_paper") for c in df.columns)


def _show_source(df: pd.DataFrame) -> bool:
    """Whether the Source column tells the rows apart: only beside the paper's numbers (without them every
    row is reproduced, and the note names the rows the paper lacks) and where the rows' sources differ."""
    return _has_paper(df) and df["source"].nunique() > 1


def _notes(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]], level: float) -> list[str]:
    """The lines above the table: what the cells are (:func:`lffood.report.tables.spread_note`), then
    what the table is; a Source column left out (:func:`_show_source`) is said here instead."""
    first = spread_note(df, level)
    if _has_paper(df):
        return [first, PAPER_NOTE] + ([] if _show_source(df) else [f"Every row: Source {df['source'].iloc[0]}."])
    bench = ", ".join(ood_sets)
    added = list(dict.fromkeys(df.loc[df["source"] == NOT_IN_PAPER, "method"]))
    second = SHAPE_NOTE.format(name=TITLES[table].split(":")[0], bench=bench)
    if added:
        second += f" Rows the paper's table lacks: {', '.join(added)}."
    return [first, second]


def _row_notes(grp: pd.DataFrame) -> list[str]:
    return list(grp["row_note"]) if "row_note" in grp else []


def markdown(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]], title: str,
             watermark: str | None = None, level: float = LEVEL) -> str:
    lines = [f"# {stamp(title, watermark)}", ""]
    for note in _notes(table, df, ood_sets, level):
        lines += [note, ""]
    source = _show_source(df)
    n_notes = 0
    for bench, grp in _blocks(table, df):
        cols = _column_keys(table, df, ood_sets, bench)
        letters, notes = _footnotes(grp, cols, bench, n_notes)
        n_notes += len(notes)
        if bench is not None:
            lines += [f"## {bench}", ""]
        header = ["Method", *(["Source"] if source else []), *[label for _, label in cols]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for i, r in grp.iterrows():
            cells = [_cell_text(r, k, True, watermark, letters.get((i, k), "")) for k, _ in cols]
            lines.append("| " + " | ".join([r["method"], *([r["source"]] if source else []), *cells]) + " |")
        lines.append("")
        for note in _note_lines(notes, _row_notes(grp), True, watermark):
            lines += [note, ""]
    return "\n".join(lines).rstrip() + "\n"


def to_latex(table: str, df: pd.DataFrame, ood_sets: Mapping[str, Sequence[str]], title: str,
             watermark: str | None = None, level: float = LEVEL) -> str:
    cell_mark = latex.escape(watermark) if watermark else None  # the cells are LaTeX already
    source = _show_source(df)
    names = 2 if source else 1
    out = []
    n_notes = 0
    for bench, grp in _blocks(table, df):
        cols = _column_keys(table, df, ood_sets, bench)
        letters, notes = _footnotes(grp, cols, bench, n_notes)
        n_notes += len(notes)
        groups = ([*ood_sets[bench], AVERAGE] if bench is not None else list(ood_sets))
        header = [[*[("", 1)] * names, *[(g, len(METRICS)) for g in groups]],
                  [("Method", 1), *([("Source", 1)] if source else []),
                   *[(METRIC_NAMES[m], 1) for _ in groups for m in METRICS]]]
        body = [[latex.escape(r["method"]), *([latex.escape(r["source"])] if source else []),
                 *[_cell_text(r, k, False, cell_mark, letters.get((i, k), "")) for k, _ in cols]]
                for i, r in grp.iterrows()]
        sources = list(grp["source"])
        breaks = [i for i in range(1, len(sources)) if (sources[i] == PAPER_ONLY) != (sources[i - 1] == PAPER_ONLY)]
        caption = " ".join([f"{stamp(title, watermark)}{f' ({bench})' if bench else ''}.",
                            *_notes(table, df, ood_sets, level)])
        out.append(latex.tabular(header, body, caption=caption, label=f"tab:{table}{'-' + bench if bench else ''}",
                                 align="l" * names + "c" * len(cols), midrules_before=breaks,
                                 notes=_note_lines(notes, _row_notes(grp), False, watermark)))
    return "\n".join(out)


#: The CSV's columns that hold the paper's numbers (left out where there is no paper column).
PAPER_SUFFIXES = ("_paper", "_paper_mark", "_paper_flag", "_paper_note", "_paper_mean_of_row", "_diff_vs_printed",
                  "_diff_vs_mean_of_row")


def write_paper_table(table: str, metric_files: Mapping[str, Sequence[str]], ood_sets: Mapping[str, Sequence[str]],
                      *, csv: str, md: str, tex: str, methods: Mapping[str, Sequence[str]], roles: Mapping[str, str],
                      title: str, paper_path: str | None = None, watermark: str | None = None,
                      level: float = LEVEL) -> pd.DataFrame:
    """``metric_files[bench]``: the per-(seed, variant) metrics CSVs of that benchmark; ``methods``:
    variant -> (label, scorer) in config order; ``roles``: config ``tables`` baseline/control/ours;
    ``paper_path``: the paper's printed numbers (None: no paper column, e.g. the embedded benchmark);
    ``watermark``: config ``watermark``, stamped on what was reproduced (module docstring); ``level``:
    the cells' intervals' (config ``stats.level``). Returns the CSV table."""
    from . import paper_numbers

    tidy = {b: collect(files) for b, files in metric_files.items()}
    paper = paper_numbers.load(paper_path) if paper_path else None
    df = build(table, tidy, ood_sets, {v: Method(*m) for v, m in methods.items()}, roles, paper, level)
    if paper is None:
        df = df.drop(columns=[c for c in df.columns if c.endswith(PAPER_SUFFIXES)] + ["row_note"], errors="ignore")
    if watermark:  # on the reproduced rows only: the paper-reported and 'not run' rows hold the paper's numbers
        df = watermarked(df, watermark, reproduced=df["source"].isin([REPRODUCED, NOT_IN_PAPER]))
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(md) as tmp:
        tmp.write_text(markdown(table, df, ood_sets, title, watermark, level))
    with atomic_path(tex) as tmp:
        tmp.write_text(to_latex(table, df, ood_sets, title, watermark, level))
    return df
