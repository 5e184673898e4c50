"""The paper's Tables I-IV side by side with the paper's printed numbers: which model and scorer fill
each row, the paper's order, paper-reported and not-in-the-paper rows, hand-computed cells and
differences, best/second marks, Markdown and LaTeX, and the same shapes without the paper column."""

import re

import numpy as np
import pandas as pd
import pytest

from lffood import integrity
from lffood.report.paper_tables import (NOT_IN_PAPER, PAPER_ONLY, POSTHOC, REPRODUCED, TABLE4, Method, build, rows,
                                        write_paper_table)

# two benchmarks named as the paper's, two seeds; AUROC / FPR95 fractions per (bench, variant, scorer, seed, set)
B10, B100 = "cifar10_resnet34", "cifar100_resnet34"
SETS = {B10: ["svhn", "isun"], B100: ["svhn", "isun", "textures"]}
METHODS = {"ce": Method("CE", "react"), "ce_control": Method("CE control", "react"), "lff": Method("LFF", "react"),
           "ssod": Method("SSOD", "ssod"), "logitnorm": Method("LogitNorm", "msp")}
ROLES = {"baseline": "ce", "control": "ce_control", "ours": "lff"}
BASE = {"ce": 0.80, "ce_control": 0.84, "lff": 0.90, "ssod": 0.86, "logitnorm": 0.82}


def _auroc(bench, variant, scorer, seed, ood):
    return (BASE[variant] + (0.02 if scorer == "react" else 0.0) + 0.01 * seed + (0.04 if ood == "svhn" else 0.0)
            - (0.1 if bench == B100 else 0.0))


def _write(tmp_path, scorers=("msp", "energy", "react"), se=None):
    files = {}
    for b, sets in SETS.items():
        files[b] = []
        for v in BASE:
            for seed in (0, 1):
                own = ("ssod",) if v == "ssod" else ()
                recs = [{"benchmark": b, "seed": seed, "variant": v, "scorer": s, "ood_set": o,
                         "auroc": _auroc(b, v, s, seed, o), "fpr95": 1 - _auroc(b, v, s, seed, o), "aupr_in": 0.5,
                         "aupr_out": 0.5, "id_acc": 0.9} for s in (*scorers, *own) for o in sets]
                if se is not None:  # every metric's test-set standard error (fraction), as the metrics rule writes
                    recs = [{**r, **{f"{m}_se": se for m in ("auroc", "fpr95", "aupr_in", "aupr_out")}} for r in recs]
                path = tmp_path / f"{b}_{v}_{seed}.csv"
                pd.DataFrame(recs).to_csv(path, index=False)
                integrity.seal(path)  # as the metrics rule writes them: with an integrity manifest
                files[b].append(str(path))
    return files


@pytest.fixture(scope="module")
def paper():
    from lffood.report import paper_numbers

    return paper_numbers.load()


def test_rows_follow_the_papers_order_with_added_rows(paper):
    t1 = rows("table1", METHODS, ROLES, paper)
    names = [r.method for r in t1]
    assert names[:len(POSTHOC)] == [label for label, _ in POSTHOC]  # KNN (not in the paper) after ViM
    assert all(r.variant == "ce" for r in t1[:len(POSTHOC)]) and t1[5] == ("KNN", "ce", "knn", None)
    # the training methods in the paper's order; LogitNorm reproduced by the variant with that label
    # TagFog keeps the paper's dagger (an additional fake OOD dataset); its paper name has none
    assert names[len(POSTHOC):len(POSTHOC) + 7] == ["CSI", "SSD+", "VOS", "LogitNorm (MSP)", "NPOS", "CIDER",
                                                    "TagFog†"]
    assert t1[len(POSTHOC) + 6] == ("TagFog†", None, None, "TagFog")
    assert t1[len(POSTHOC) + 3] == ("LogitNorm (MSP)", "logitnorm", "msp", "LogitNorm")
    assert t1[len(POSTHOC)].variant is None  # CSI: paper-reported
    # then the rows the paper lacks, and Ours last
    assert [(r.method, r.paper) for r in t1[-3:]] == [("CE control (ReAct)", None), ("SSOD (SSOD)", None),
                                                     ("Ours (LFF + ReAct)", "Ours")]
    t4 = rows("table4", METHODS, ROLES, paper)
    assert len(t4) == 3 * len(TABLE4)
    assert t4[:3] == [("MSP", "ce", "msp", "MSP"), ("MSP (CE control)", "ce_control", "msp", None),
                      ("MSP+Ours", "lff", "msp", "MSP+Ours")]
    no_paper = rows("table1", METHODS, ROLES, None)  # the embedded benchmark's shape: no paper-reported rows
    assert all(r.variant is not None for r in no_paper) and no_paper[-1].method == "Ours (LFF + ReAct)"
    with pytest.raises(KeyError, match="table9"):
        rows("table9", METHODS, ROLES, paper)


def test_per_ood_table_side_by_side_with_the_paper(tmp_path, paper):
    files = _write(tmp_path)
    out = {k: tmp_path / f"t1.{k}" for k in ("csv", "md", "tex")}
    df = write_paper_table("table1", files, SETS, csv=str(out["csv"]), md=str(out["md"]), tex=str(out["tex"]),
                           methods=METHODS, roles=ROLES, title="Table I: test",
                           paper_path=None if paper is None else str(
                               __import__("lffood.report.paper_numbers", fromlist=["x"]).DEFAULT_PATH))
    c10 = df[df["benchmark"] == B10].set_index("method")
    # only scorers that ran are reproduced rows; paper-only rows keep the paper's numbers
    assert list(c10[c10["source"] == REPRODUCED].index) == ["MSP", "Energy", "ReAct", "LogitNorm (MSP)",
                                                           "Ours (LFF + ReAct)"]
    assert set(c10[c10["source"] == PAPER_ONLY].index) == {"CSI", "SSD+", "VOS", "NPOS", "CIDER", "TagFog†"}
    # printed post-hoc rows whose scorer this run did not include keep the paper's numbers
    assert set(c10[c10["source"] == "not run"].index) == {"ODIN", "Mahalanobis", "ViM", "DICE", "DICE+ReAct",
                                                          "FeatureNorm", "LiNe"}
    assert "KNN" not in c10.index  # not run, and not in the paper
    assert c10.loc["SSOD (SSOD)", "source"] == NOT_IN_PAPER
    ours = c10.loc["Ours (LFF + ReAct)"]
    # LFF + react on svhn: 0.92 + 0.04 + {0, 0.01} -> 96.5 ± 0.707; the paper prints Ours' SVHN AUROC
    assert ours["svhn/auroc_mean"] == pytest.approx(96.5) and ours["svhn/auroc_std"] == pytest.approx(0.707, abs=1e-3)
    printed = float(paper[(paper["table"] == "table1") & (paper["benchmark"] == B10) & (paper["method"] == "Ours")
                          & (paper["ood_set"] == "svhn") & (paper["metric"] == "auroc")]["value"].iloc[0])
    assert ours["svhn/auroc_paper"] == pytest.approx(printed)
    assert ours["svhn/auroc_diff_vs_printed"] == pytest.approx(96.5 - printed, abs=1e-3)
    assert pd.isna(c10.loc["CSI", "svhn/auroc_mean"]) and not pd.isna(c10.loc["CSI", "svhn/auroc_paper"])
    assert pd.isna(c10.loc["SSOD (SSOD)", "svhn/auroc_paper"])
    # marks among reproduced rows: Ours best AUROC (bold), SSOD (0.86) second (underline)
    assert ours["svhn/auroc_mark"] == "bold" and c10.loc["SSOD (SSOD)", "svhn/auroc_mark"] == "underline"
    assert c10.loc["Ours (LFF + ReAct)", "svhn/fpr95_mark"] == "bold"  # lowest FPR95
    md = out["md"].read_text()
    ours_md = next(line for line in md.splitlines() if line.startswith("| Ours (LFF + ReAct) | reproduced | "))
    # the tables' one cell format: one decimal; the paper's value as printed; Δ with one decimal
    assert "## cifar100_resnet34" in md and "| **3.5 ± 0.7** (paper " in ours_md and "**96.5 ± 0.7** (paper" in ours_md
    assert re.search(r"\*\*96\.5 ± 0\.7\*\* \(paper \d+\.\d\d; Δ [+-]\d+\.\d\)", ours_md)
    assert md.count("| Method | Source |") == 2  # beside the paper, the sources differ: the column stays
    assert "| CSI | paper-reported | (paper " in md
    tex = out["tex"].read_text()
    assert tex.count(r"\begin{tabular}") == 2 and tex.count(r"\toprule") == 2
    body = tex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    row_lines = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(row_lines) == len(c10)  # one LaTeX row per table row of the first benchmark
    assert r"\textbf{96.5 $\pm$ 0.7}" in tex


def test_average_table_with_the_paper(tmp_path, paper):
    files = _write(tmp_path, scorers=("msp", "energy", "react"))
    from lffood.report import paper_numbers

    df = write_paper_table("table4", {b: files[b] for b in (B10, B100)}, SETS, csv=str(tmp_path / "t4.csv"),
                           md=str(tmp_path / "t4.md"), tex=str(tmp_path / "t4.tex"), methods=METHODS, roles=ROLES,
                           title="Table IV: test", paper_path=str(paper_numbers.DEFAULT_PATH))
    # ODIN and FeatureNorm did not run: their rows keep only the paper's numbers
    r = df.set_index("method")
    assert r.loc["Energy+Ours", "source"] == REPRODUCED and r.loc["ODIN+Ours", "source"] == "not run"
    # lff energy c100: 0.80 + seed/100 + (0.04 on svhn), 3 sets -> per-seed averages 0.8133 / 0.8233
    assert r.loc["Energy+Ours", f"{B100}/average/auroc_mean"] == pytest.approx(100 * (0.80 + 0.04 / 3 + 0.005),
                                                                              abs=1e-3)
    assert r.loc["Energy+Ours", f"{B100}/average/auroc_paper"] == pytest.approx(92.11)  # Table IV as printed
    assert r.loc["Energy+Ours", f"{B100}/average/auroc_paper_mark"] == "bold"
    assert pd.isna(r.loc["Energy (CE control)", f"{B10}/average/auroc_paper"])  # the paper has no control rows
    tex = (tmp_path / "t4.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 1 and "cifar10\\_resnet34" in tex


def test_same_shapes_without_the_paper(tmp_path):
    files = _write(tmp_path)
    df = write_paper_table("table1", {B10: files[B10]}, {B10: SETS[B10]}, csv=str(tmp_path / "e.csv"),
                           md=str(tmp_path / "e.md"), tex=str(tmp_path / "e.tex"), methods=METHODS, roles=ROLES,
                           title="Table I's shape: embedded")
    assert not [c for c in df.columns if "_paper" in c or "_diff" in c or c == "row_note"]
    assert set(df["source"]) == {REPRODUCED, NOT_IN_PAPER}  # the CSV keeps every row's source
    # a variant labelled as a printed training method is that row of the paper's table, without its numbers too
    by_method = df.set_index("method")
    assert by_method.loc["LogitNorm (MSP)", "source"] == REPRODUCED
    assert by_method.loc["SSOD (SSOD)", "source"] == NOT_IN_PAPER
    md = (tmp_path / "e.md").read_text()
    assert "(paper" not in md
    # without the paper every row is reproduced: no Source column; the note names the rows the paper lacks
    assert "| Method | svhn FPR95↓ | svhn AUROC↑ |" in md and "Source" not in md and "| reproduced" not in md
    added = list(df.loc[df["source"] == NOT_IN_PAPER, "method"])
    assert added and f"Rows the paper's table lacks: {', '.join(added)}." in md
    assert "The primary table of this benchmark is cifar10_resnet34" in md
    tex = (tmp_path / "e.tex").read_text()
    assert r"\begin{tabular}{lcccccc}" in tex and "reproduced &" not in tex


def test_cells_show_the_interval_where_the_metrics_carry_standard_errors(tmp_path):
    from scipy import stats

    files = _write(tmp_path, se=0.01)  # 1 point of test-set standard error on every metric
    df = write_paper_table("table1", {B10: files[B10]}, {B10: SETS[B10]}, csv=str(tmp_path / "e.csv"),
                           md=str(tmp_path / "e.md"), tex=str(tmp_path / "e.tex"), methods=METHODS, roles=ROLES,
                           title="shape").set_index("method")
    # Ours svhn AUROC: 96 and 97 over the seeds -> s²/n = 0.25, t² = 1; Welch df = V² / (0.25² / 1)
    v = 0.25 + 1.0
    hw = stats.t.ppf(0.975, v ** 2 / 0.25 ** 2) * np.sqrt(v)
    assert df.loc["Ours (LFF + ReAct)", "svhn/auroc_ci_hw"] == pytest.approx(hw)
    md = (tmp_path / "e.md").read_text()
    assert f"**96.5 ± {hw:.1f}**" in md and "half-width of its 95% interval" in md


def test_average_table_leaves_empty_cells_for_a_benchmark_without_the_scorer(tmp_path):
    files = _write(tmp_path)
    tidy = {}
    for b in (B10, B100):
        t = pd.concat([pd.read_csv(f) for f in files[b]])
        if b == B100:
            t = t[t["scorer"] != "msp"]
        for m in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_acc"):
            t[m] = 100 * t[m]
        tidy[b] = t
    df = build("table4", tidy, SETS, METHODS, ROLES).set_index("method")
    assert pd.isna(df.loc["MSP", f"{B100}/average/auroc_mean"]) and not pd.isna(df.loc["MSP", f"{B10}/average/auroc_mean"])


# ----------------------------------------------------------------------------- flagged printed values, the dagger
def _marked_table1(tmp_path, watermark=None):
    """Table I with Energy and DICE reproduced: CIFAR-100's Energy and DICE average AUROCs are flagged."""
    from lffood.report import paper_numbers
    from lffood.report.html import write_html_from_markdown

    files = _write(tmp_path, scorers=("msp", "energy", "react", "dice"))
    out = {k: tmp_path / f"m.{k}" for k in ("csv", "md", "tex", "html")}
    write_paper_table("table1", files, SETS, csv=str(out["csv"]), md=str(out["md"]), tex=str(out["tex"]),
                      methods=METHODS, roles=ROLES, title="Table I: marks", paper_path=str(paper_numbers.DEFAULT_PATH),
                      watermark=watermark)
    write_html_from_markdown(str(out["md"]), str(out["html"]))
    csv = pd.read_csv(out["csv"], keep_default_na=False, na_values=[""])
    return csv, {k: out[k].read_text() for k in ("md", "tex", "html")}


def _flagged_letter(md: str, cell_start: str) -> str:
    """The footnote letter on the Markdown cell of the CIFAR-100 Energy row that starts ``cell_start``."""
    block = md.split("## cifar100_resnet34", 1)[1]
    row = next(line for line in block.splitlines() if line.startswith("| Energy | reproduced |"))
    found = re.search(re.escape(cell_start) + r"<sup>([a-z]+)</sup>", row)
    assert found, row
    return found.group(1)


def test_flagged_printed_average_in_the_csv(tmp_path, paper):
    csv, _ = _marked_table1(tmp_path)
    energy = csv[(csv["benchmark"] == B100) & (csv["method"] == "Energy")].iloc[0]
    mean = energy["average/auroc_mean"]
    assert energy["average/auroc_paper"] == pytest.approx(83.64)
    assert energy["average/auroc_paper_flag"] == "average_differs_from_row_mean"
    assert energy["average/auroc_paper_mean_of_row"] == pytest.approx(82.773, abs=1e-3)  # its row's own mean
    assert "82.773" in energy["average/auroc_paper_note"] and "83.64" in energy["average/auroc_paper_note"]
    # the difference says which value it compares with: the printed one; the row mean has its own column
    assert energy["average/auroc_diff_vs_printed"] == pytest.approx(mean - 83.64, abs=1e-3)
    assert energy["average/auroc_diff_vs_mean_of_row"] == pytest.approx(mean - 82.773, abs=2e-3)
    # an unflagged average: no flag, no note; its row mean is the printed average up to rounding
    assert pd.isna(energy["average/fpr95_paper_flag"]) and pd.isna(energy["average/fpr95_paper_note"])
    assert energy["average/fpr95_paper_mean_of_row"] == pytest.approx(energy["average/fpr95_paper"], abs=0.011)
    assert "svhn/auroc_paper_mean_of_row" not in csv.columns  # a row mean belongs to an Average cell only
    # every flagged Table I cell of the two benchmarks, and only those, is flagged in the CSV
    printed = paper[(paper["table"] == "table1") & (paper["flag"] != "")]
    flagged = {(r.benchmark, r.method, f"{r.ood_set}/{r.metric}") for r in printed.itertuples()}
    got = {(r["benchmark"], r["paper"], c.removesuffix("_paper_flag")) for _, r in csv.iterrows()
           for c in csv.columns if c.endswith("_paper_flag") and isinstance(r[c], str) and r[c]}
    assert got == flagged and len(got) == 8


def test_flagged_printed_values_are_marked_in_markdown_latex_and_html(tmp_path, paper):
    csv, out = _marked_table1(tmp_path)
    md, tex, html = out["md"], out["tex"], out["html"]
    letter = _flagged_letter(md, "(paper 83.64")
    # Markdown: the mark on the printed value, "Δ vs printed", and the note under the table with the row mean
    assert re.search(rf"\(paper 83\.64<sup>{letter}</sup>; Δ vs printed [+-]\d+\.\d\)", md)
    note = next(line for line in md.splitlines() if line.startswith(f"<sup>{letter}</sup> "))
    assert note.startswith(f"<sup>{letter}</sup> cifar100_resnet34, Energy, Average AUROC↑: the paper prints 83.64")
    assert "82.773" in note and "compares with the printed value" in note and "reproduced − row mean" in note
    # one letter per flagged cell of the file (a-h across both benchmark blocks), each explained once
    letters = re.findall(r"\(paper [\d.]+(?:\*\*)?(?:</u>)?<sup>([a-z]+)</sup>", md)
    assert letters == [chr(97 + i) for i in range(8)]
    assert all(sum(line.startswith(f"<sup>{x}</sup> ") for line in md.splitlines()) == 1 for x in letters)
    # an unflagged printed value keeps its plain Δ
    assert "(paper 79.25; Δ " in md and "(paper 79.25; Δ vs" not in md
    # LaTeX: the same mark and Δ label in the cell, the note under the tabular inside the table
    assert re.search(rf"\(paper 83\.64\\textsuperscript\{{{letter}\}}; \$\\Delta\$ vs printed", tex)
    c100 = tex.split(r"\begin{table}")[2]
    notes = c100.split(r"\bottomrule", 1)[1].split(r"\end{table}")[0]
    assert rf"\textsuperscript{{{letter}}}~cifar100\_resnet34, Energy, Average AUROC" in notes and "82.773" in notes
    # HTML: the mark survives as <sup>, the note is a paragraph
    assert re.search(rf"<td>[^<]*\(paper 83\.64<sup>{letter}</sup>; Δ vs printed", html)
    assert re.search(rf"<p><sup>{letter}</sup> cifar100_resnet34, Energy, Average AUROC↑: [^<]*82\.773", html)
    assert "&lt;sup&gt;" not in html


def test_tagfog_keeps_its_dagger_and_note_in_every_format(tmp_path):
    csv, out = _marked_table1(tmp_path)
    tagfog = csv[csv["paper"] == "TagFog"]
    assert set(tagfog["method"]) == {"TagFog†"} and len(tagfog) == 2 and set(tagfog["source"]) == {PAPER_ONLY}
    assert tagfog["row_note"].str.contains("additional fake OOD dataset").all()
    assert csv.loc[csv["paper"] != "TagFog", "row_note"].isna().all()
    md, tex, html = out["md"], out["tex"], out["html"]
    assert md.count("| TagFog† | paper-reported |") == 2
    assert md.count("\n† As in the paper: an additional fake OOD dataset is used") == 2  # under each block
    assert tex.count("TagFog† & paper-reported &") == 2
    assert re.search(r"\\bottomrule.*\n† As in the paper: an additional fake OOD dataset is used[^\n]*\\par\n",
                     tex, re.S)
    assert html.count("<td>TagFog†</td>") == 2 and "<p>† As in the paper" in html


def test_flagged_marks_and_watermark(tmp_path):
    wm = "REHEARSAL (not a result)"
    _, out = _marked_table1(tmp_path, watermark=wm)
    letter = _flagged_letter(out["md"], "(paper 83.64")
    note = next(line for line in out["md"].splitlines() if line.startswith(f"<sup>{letter}</sup> "))
    # the note's paper side is never stamped; its reproduced difference is
    paper_side, _, reproduced = note.partition(f"{wm}: ")
    assert "82.773" in paper_side and reproduced.startswith("reproduced − row mean")


def test_table4_notes_give_the_mean_of_the_row_it_repeats(tmp_path, paper):
    from lffood.report import paper_numbers

    files = _write(tmp_path)
    df = write_paper_table("table4", files, SETS, csv=str(tmp_path / "t4.csv"), md=str(tmp_path / "t4.md"),
                           tex=str(tmp_path / "t4.tex"), methods=METHODS, roles=ROLES, title="Table IV: marks",
                           paper_path=str(paper_numbers.DEFAULT_PATH)).set_index("method")
    col = f"{B100}/average/auroc"
    assert df.loc["Energy", f"{col}_paper_flag"] == "copied_average_differs_from_row_mean"
    assert df.loc["Energy", f"{col}_paper_mean_of_row"] == pytest.approx(82.773, abs=1e-3)  # Table I's Energy row
    ours = paper[(paper["table"] == "table1") & (paper["benchmark"] == B100) & (paper["method"] == "Ours")
                 & (paper["metric"] == "auroc") & (paper["ood_set"] != "average")]["value"].mean()
    assert df.loc["ReAct+Ours", f"{col}_paper_mean_of_row"] == pytest.approx(ours, abs=1e-3)
    assert pd.isna(df.loc["MSP+Ours", f"{col}_paper_mean_of_row"])  # the paper prints no per-set MSP+Ours values
    md = (tmp_path / "t4.md").read_text()
    assert re.search(r"\| Energy \| reproduced \|.*\(paper 83\.64<sup>a</sup>; Δ vs printed", md)
    note = next(line for line in md.splitlines() if line.startswith("<sup>a</sup> "))
    assert "cifar100_resnet34, Energy, Average AUROC↑" in note and "Table I row it repeats" in note
    assert "82.773" in note


def test_no_marks_without_the_paper(tmp_path):
    files = _write(tmp_path)
    write_paper_table("table1", {B100: files[B100]}, {B100: SETS[B100]}, csv=str(tmp_path / "e.csv"),
                      md=str(tmp_path / "e.md"), tex=str(tmp_path / "e.tex"), methods=METHODS, roles=ROLES,
                      title="shape")
    assert "<sup>" not in (tmp_path / "e.md").read_text() and "textsuperscript" not in (tmp_path / "e.tex").read_text()
