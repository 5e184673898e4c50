"""Config `watermark` (the rehearsal sets "REHEARSAL (not a result)"): every reproduced table cell in
every format (CSV, Markdown, LaTeX, HTML), every table title, every figure's heading and the report's
pages carry it; the paper's printed numbers never do; without one (null) nothing changes."""

import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lffood import integrity  # noqa: E402
from lffood.config import validate_config  # noqa: E402
from lffood.errors import ConfigError  # noqa: E402
from lffood.names import PAPER_NUMBERS  # noqa: E402
from lffood.report import figures, latex, summary  # noqa: E402
from lffood.report.html import write_html_from_markdown  # noqa: E402
from lffood.report.paper_tables import NOT_IN_PAPER, REPRODUCED, write_paper_table  # noqa: E402
from lffood.report.sensitivity import write_sensitivity  # noqa: E402
from lffood.report.tables import (collect, stamp, watermark_of, watermarked, write_scorer_table,  # noqa: E402
                                  write_tables)

ROOT = Path(__file__).resolve().parents[2]
WM = "REHEARSAL (not a result)"
SETS = ["svhn", "isun"]
LABELS = {"ce": "CE", "ce_control": "CE control", "lff": "LFF"}
ROLES = {"baseline": "ce", "control": "ce_control", "ours": "lff"}
OWN = {"ce": "react", "ce_control": "react", "lff": "react"}
BENCH = "cifar10_resnet34"  # a benchmark the paper prints, so that Tables I and IV have paper cells


def metric_files(tmp_path, bench=BENCH, seeds=(0, 1)) -> list[str]:
    files = []
    for i, v in enumerate(LABELS):
        for seed in seeds:
            rows = [{"benchmark": bench, "variant": v, "seed": seed, "scorer": sc, "ood_set": o,
                     "auroc": 0.8 + 0.04 * i + 0.01 * seed + (0.02 if sc == "react" else 0) + 0.01 * j,
                     "fpr95": 0.5 - 0.05 * i, "aupr_in": 0.6, "aupr_out": 0.7, "id_acc": 0.9}
                    for sc in ("msp", "energy", "react") for j, o in enumerate(SETS)]
            path = tmp_path / f"{bench}_{v}_{seed}.csv"
            pd.DataFrame(rows).to_csv(path, index=False)
            integrity.seal(path)  # as the metrics rule writes them: with an integrity manifest
            files.append(str(path))
    return files


def unstamped(text: str, mark: str = WM) -> str:
    return text.replace(f"{mark}: ", "")


def unmarked(cell: str) -> str:
    """A cell's text without the best / second-best marks of Markdown, HTML and LaTeX."""
    return re.sub(r"\*\*|</?[bu]>|\\textbf\{|\\underline\{", "", cell.strip())


def md_rows(md: str) -> list[list[str]]:
    """The body rows of every pipe table of a Markdown file, as cell texts (:func:`unmarked`)."""
    rows = [[unmarked(c) for c in line.strip().strip("|").split("|")] for line in md.splitlines()
            if line.startswith("|")]
    return [r for r in rows if not set("".join(r)) <= set("-: ") and r[0] not in ("Scorer", "Method", "OOD set")]


def tex_rows(tex: str) -> list[list[str]]:
    rows = []
    for body in re.findall(r"\\midrule\n(.*?)\\bottomrule", tex, re.S):
        rows += [[unmarked(c) for c in line.removesuffix(r" \\").split(" & ")] for line in body.splitlines()
                 if line.endswith(r"\\")]
    return rows


def html_rows(html: str) -> list[list[str]]:
    return [[unmarked(c) for c in re.findall(r"<td>(.*?)</td>", tr)] for tr in re.findall(r"<tr>(<td>.*?)</tr>", html)]


def write_all(tmp_path, name, writer, **kwargs) -> dict[str, str]:
    """Every file a table writer makes (and the HTML page made from its Markdown), as text."""
    out = {k: tmp_path / f"{name}.{k}" for k in ("csv", "md", "tex", "html")}
    writer(csv=str(out["csv"]), md=str(out["md"]), tex=str(out["tex"]), **kwargs)
    write_html_from_markdown(str(out["md"]), str(out["html"]))
    return {k: p.read_text() for k, p in out.items()}


# ----------------------------------------------------------------------------- the one stamp
def test_stamp_and_the_csv_column():
    assert stamp("93.1 ± 0.4", WM) == f"{WM}: 93.1 ± 0.4" and stamp("93.1 ± 0.4", None) == "93.1 ± 0.4"
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    assert watermarked(df, None) is df
    marked = watermarked(df, WM, reproduced=[True, False])
    assert list(marked.columns) == ["watermark", "a", "b"] and list(marked["watermark"]) == [WM, ""]
    assert marked["a"].dtype == float and watermark_of(marked) == WM and watermark_of(df) is None


def test_config_key():
    cfg = {"run": ["b"], "benchmarks": {"b": {"dataset": {"source": "embedded", "ood_sets": ["far"]}}}}
    schema = ROOT / "src" / "lffood" / "resources" / "config.schema.yaml"
    assert validate_config(cfg, schema)["watermark"] is None
    assert validate_config({**cfg, "watermark": WM}, schema)["watermark"] == WM
    assert validate_config(cfg, schema, overrides={"watermark": WM})["watermark"] == WM
    for bad in ("", 3):
        with pytest.raises(ConfigError, match="watermark"):
            validate_config({**cfg, "watermark": bad}, schema)


# ----------------------------------------------------------------------------- tables
TABLES = ["results", "scorers"]


def table_writer(kind, files, tidy):
    """(writer, its arguments) of the results table (``tidy``: its tidy CSV) or the scorer table."""
    common = {"metric_files": files, "labels": LABELS, "ood_order": SETS}
    if kind == "results":
        return write_tables, {**common, "tidy": tidy, "title": "Toy results"}
    return write_scorer_table, {**common, "title": "Toy scorers"}


@pytest.mark.parametrize("kind", TABLES)
def test_every_cell_of_numbers_carries_the_watermark_in_every_format(tmp_path, kind):
    writer, kwargs = table_writer(kind, metric_files(tmp_path), str(tmp_path / "tidy.csv"))
    out = write_all(tmp_path, kind, writer, **kwargs, watermark=WM)
    csv = pd.read_csv(tmp_path / f"{kind}.csv")
    assert list(csv.columns)[0] == "watermark" and set(csv["watermark"]) == {WM}
    assert csv["average/auroc_mean"].dtype == float  # the numbers stay numbers
    assert out["md"].startswith(f"# {WM}: Toy ") and f"<title>{WM}: Toy " in out["html"]
    assert rf"\caption{{{latex.escape(WM)}: Toy " in out["tex"]
    for fmt, rows in (("md", md_rows(out["md"])), ("tex", tex_rows(out["tex"])), ("html", html_rows(out["html"]))):
        assert len(rows) == 9, fmt  # 3 scorers x 3 models
        for row in rows:
            assert not any(WM in c for c in row[:2]), (fmt, row)  # the scorer's and the model's names
            numbers = row[2:]
            assert numbers and all(c.startswith(latex.escape(WM) if fmt == "tex" else WM) for c in numbers), (fmt, row)
    if kind == "results":
        assert set(pd.read_csv(tmp_path / "tidy.csv")["watermark"]) == {WM}


@pytest.mark.parametrize("kind", TABLES)
def test_without_a_watermark_nothing_changes(tmp_path, kind):
    """null writes exactly what a writer without the key writes, and the stamped files are those
    files with the stamp added and nothing else changed."""
    files = metric_files(tmp_path)
    writer, kwargs = table_writer(kind, files, str(tmp_path / "tidy_default.csv"))
    default = write_all(tmp_path, f"{kind}_default", writer, **kwargs)
    writer, kwargs = table_writer(kind, files, str(tmp_path / "tidy_null.csv"))
    assert write_all(tmp_path, f"{kind}_null", writer, **kwargs, watermark=None) == default
    writer, kwargs = table_writer(kind, files, str(tmp_path / "tidy_wm.csv"))
    marked = write_all(tmp_path, f"{kind}_wm", writer, **kwargs, watermark=WM)
    for fmt in ("md", "tex", "html"):
        assert unstamped(marked[fmt], latex.escape(WM) if fmt == "tex" else WM) == default[fmt], fmt
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / f"{kind}_wm.csv").drop(columns="watermark"),
                                  pd.read_csv(tmp_path / f"{kind}_default.csv"))
    assert "watermark" not in default["csv"].splitlines()[0]
    if kind == "results":
        assert (tmp_path / "tidy_null.csv").read_bytes() == (tmp_path / "tidy_default.csv").read_bytes()


def test_latex_escapes_the_watermark(tmp_path):
    writer, kwargs = table_writer("results", metric_files(tmp_path), str(tmp_path / "tidy.csv"))
    tex = write_all(tmp_path, "t", writer, **kwargs, watermark="50% & #1")["tex"]
    assert r"50\% \& \#1: " in tex and "50% & #1" not in tex


# ----------------------------------------------------------------------------- paper tables
def paper_table(tmp_path, table, watermark, paper=True, name=None):
    files = {BENCH: metric_files(tmp_path)}
    methods = {v: (label, OWN[v]) for v, label in LABELS.items()}
    paper_path = str(PAPER_NUMBERS) if paper else None
    out = write_all(tmp_path, name or f"{table}_{watermark}", write_paper_table, table=table, metric_files=files,
                    ood_sets={BENCH: SETS}, methods=methods, roles=ROLES, title=f"{table}: test",
                    paper_path=paper_path, watermark=watermark)
    return out, pd.read_csv(tmp_path / f"{name or f'{table}_{watermark}'}.csv", keep_default_na=False)


def _check_paper_cell(cell: str, mark: str, reproduced: bool) -> None:
    """A reproduced value (mean ± std) follows the mark; the paper's '(paper ...)' never carries it."""
    ours, _, printed = cell.partition("(paper")
    assert mark not in printed, cell
    if "±" in ours or "pm" in ours:
        assert reproduced and ours.startswith(mark), cell
    else:
        assert mark not in ours, cell


@pytest.mark.parametrize("table", ["table1", "table4"])
def test_paper_tables_stamp_what_was_reproduced_never_the_papers_numbers(tmp_path, table):
    out, csv = paper_table(tmp_path, table, WM)
    reproduced = csv["source"].isin([REPRODUCED, NOT_IN_PAPER])
    assert reproduced.any() and (~reproduced).any()  # the paper's rows are there too
    assert list(csv.columns)[0] == "watermark"
    assert (csv.loc[reproduced, "watermark"] == WM).all() and (csv.loc[~reproduced, "watermark"] == "").all()
    assert out["md"].startswith(f"# {WM}: {table}: test") and rf"\caption{{{latex.escape(WM)}: {table}" in out["tex"]
    sources = dict(zip(csv["method"], csv["source"]))
    for fmt, rows, mark in (("md", md_rows(out["md"]), WM), ("html", html_rows(out["html"]), WM),
                            ("tex", tex_rows(out["tex"]), latex.escape(WM))):
        assert len(rows) == len(csv), fmt
        for row in rows:
            name = row[0].replace(r"\_", "_")
            assert not any(mark in c for c in row[:2]), (fmt, row)
            for cell in row[2:]:
                _check_paper_cell(cell, mark, sources[name] in (REPRODUCED, NOT_IN_PAPER))
    stamped = [c for row in md_rows(out["md"]) for c in row[2:] if c.startswith(WM)]
    assert any("Δ" in c for c in stamped)  # a difference to the paper sits in a stamped cell
    plain, plain_csv = paper_table(tmp_path, table, None)
    assert unstamped(out["md"]) == plain["md"] and unstamped(out["tex"], latex.escape(WM)) == plain["tex"]
    assert unstamped(out["html"]) == plain["html"]
    assert "watermark" not in plain_csv.columns


def test_paper_shape_without_the_paper_column(tmp_path):
    out, csv = paper_table(tmp_path, "table1", WM, paper=False, name="shape")
    assert (csv["watermark"] == WM).all()  # every row is reproduced
    assert all(c.startswith(WM) for row in md_rows(out["md"]) for c in row[2:])


# ----------------------------------------------------------------------------- figures
def _auroc_bars(tmp_path, watermark):
    methods = {v: (label, OWN[v]) for v, label in LABELS.items()}
    table = figures.auroc_bar_table(collect(metric_files(tmp_path)), methods, SETS)
    return figures.plot_auroc_bars(table, colours=figures.method_colours(list(LABELS), ROLES), reference="ce_control",
                                   title="CIFAR-10 vs six OOD sets, ResNet-34 (paper Tables I and IV)",
                                   watermark=watermark)


def _heatmaps(tmp_path, watermark):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(4)]
    maps = {v: [rng.uniform(0, 3, (4, 4)) for _ in range(4)] for v in LABELS}
    return figures.plot_heatmaps(images, [f"OOD #{i}\nsvhn" for i in range(4)], maps, labels=LABELS, title="toy",
                                 watermark=watermark)


def _tsne(tmp_path, watermark):
    rng = np.random.default_rng(0)
    emb = {v: {"id": rng.normal(0, 1, (20, 2)), "ood": rng.normal(3, 1, (10, 2)),
               "background": rng.normal(-3, 1, (5, 2))} for v in ("ce", "lff")}
    return figures.plot_tsne(emb, {v: np.repeat(np.arange(4), 5) for v in emb}, labels=LABELS, ood_set="svhn",
                             title="a long benchmark description " * 4, watermark=watermark)


def _sensitivity(tmp_path, watermark, monkeypatch=None):
    from lffood.report import sensitivity

    shown = []
    monkeypatch.setattr(sensitivity, "save_figure", lambda fig, png, pdf: shown.append(fig))
    points = [{"param": "lambda", "value": 0.5, "variant": "lff", "base": "lff", "scorer": "react"}]
    write_sensitivity(metric_files(tmp_path), points, reference="ce_control", labels=LABELS, title="toy",
                      csv=str(tmp_path / "s.csv"), png="-", pdf="-", watermark=watermark)
    if watermark:
        assert set(pd.read_csv(tmp_path / "s.csv")["watermark"]) == {watermark}
    return shown[0]


FIGURES = {"auroc_bars": _auroc_bars, "heatmaps": _heatmaps, "tsne": _tsne, "sensitivity": _sensitivity}


@pytest.mark.parametrize("name", FIGURES)
def test_figure_heading_carries_the_watermark_and_stays_legible(tmp_path, monkeypatch, name):
    make = FIGURES[name]
    args = (monkeypatch,) if name == "sensitivity" else ()
    plain = make(tmp_path, None, *args)
    heading = plain._suptitle.get_text()
    plt.close(plain)
    fig = make(tmp_path, WM, *args)
    assert fig._suptitle.get_text() == f"{WM}\n{heading}"
    figures.freeze_layout(fig)
    assert figures.layout_problems(fig) == []
    plt.close(fig)


def test_a_long_watermark_wraps_within_the_figure(tmp_path):
    fig = _auroc_bars(tmp_path, "REHEARSAL (not a result): toy data in the real formats, one epoch, to prove that "
                                "every rule runs; none of these numbers is a result")
    figures.freeze_layout(fig)
    assert figures.layout_problems(fig) == []
    plt.close(fig)


def test_auroc_bars_csv(tmp_path):
    methods = {v: (label, OWN[v]) for v, label in LABELS.items()}
    out = {e: tmp_path / f"bars.{e}" for e in ("png", "pdf", "csv")}
    figures.write_auroc_bars(metric_files(tmp_path), methods, roles=ROLES, png=str(out["png"]), pdf=str(out["pdf"]),
                             csv=str(out["csv"]), ood_order=SETS, watermark=WM)
    csv = pd.read_csv(out["csv"])
    assert list(csv.columns)[0] == "watermark" and set(csv["watermark"]) == {WM}
    assert csv["auroc_mean"].dtype == float


# ----------------------------------------------------------------------------- README block, workflow
def test_readme_block_from_watermarked_metrics_keeps_the_watermark(tmp_path):
    tidy = collect(metric_files(tmp_path))
    tidy = tidy.assign(**{f"{m}_se": 0.5 for m in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_acc")})
    methods = {v: (label, OWN[v]) for v, label in LABELS.items()}
    # the comparison with the control as rule compare writes it (lffood.report.compare)
    comparison = pd.DataFrame([{"method": v, "label": LABELS[v], "scorer": "react", "control_scorer": "react",
                                "metric": m, "ood_set": o, "n_seeds": 2, "diff": 1.0, "ci_low": -0.5, "ci_high": 2.5,
                                "df": 3.0, "se_seeds": 0.3, "se_test": 0.4, "verdict": "tie", "seeds_in_interval": True,
                                "level": 0.95, "bootstrap": 1000}
                               for v in ("ce", "lff") for m in ("auroc", "fpr95") for o in [*SETS, "average"]])
    kwargs = {"bench": BENCH, "methods": methods, "ood_sets": SETS, "origin": "o", "command": "c"}
    marked = summary.results_block(watermarked(tidy, WM), watermarked(comparison, WM), **kwargs)
    plain = summary.results_block(tidy, comparison, **kwargs)
    assert f"**{WM}**\n\n_Generated" in marked
    assert unstamped(marked.replace(f"**{WM}**\n\n", "")) == plain
    numbers = 0
    for line in marked.splitlines():
        if line.startswith("| ") and ("±" in line or "[" in line):
            cells = line.strip("| ").split(" | ")
            numbers += sum("±" in c or "[" in c for c in cells)
            assert all(c.startswith(WM) for c in cells if "±" in c or "[" in c) and not cells[0].startswith(WM)
    assert numbers == 3 * 5 + 2 * 3  # the methods' cells and the comparison's


def test_every_table_and_figure_rule_passes_the_watermark_on(repo):
    """Each rule of report.smk with a table or figure output has the param, and its script hands it on."""
    from conftest import workflow_rules

    writers = {name: body for name, body in workflow_rules().items()
               if re.search(r'ext="(png|md)"', body)}
    assert {"table", "scorer_table", "paper_table", "bench_paper_table", "figures", "sensitivity", "tsne",
            "auroc_bars", "heatmaps"} <= set(writers)
    for name, body in writers.items():
        assert 'watermark=config["watermark"]' in body, name
        script = (repo / "workflow" / "scripts" / re.search(r'"\.\./scripts/(\w+\.py)"', body).group(1)).read_text()
        assert re.search(r"watermark=(p|smk\.params)\.watermark", script), name
    pages = sorted((repo / "workflow" / "report").glob("*.rst"))
    for page in pages:
        text = page.read_text()
        key = 'snakemake.config.get("watermark")' if page.name == "workflow.rst" else "snakemake.params.watermark"
        assert text.startswith(f"{{% if {key} %}}"), page.name
