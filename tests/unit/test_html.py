"""HTML renderings of the Markdown tables (the Snakemake report's pages, the results page's fragments) and the results
page itself (lffood.report.page): captions as the report renders them, figures, verdicts, folded tables."""

import pytest

from lffood.report.html import STYLE, first_heading, markdown_fragment, markdown_to_html


def test_markdown_table_to_html():
    md = ("# Title & more\n\nA note with **bold**.\n\n## block\n\n| Scorer | Model | a AUROC↑ |\n|---|---|---|\n"
          "| ReAct | LFF | **96.3 ± 0.3** |\n| ReAct | CE | <u>93.1 ± 0.2</u> |\n")
    page = markdown_to_html(md, "Title")
    assert page.startswith("<!DOCTYPE html>") and "<title>Title</title>" in page
    assert "<h1>Title &amp; more</h1>" in page and "<h2>block</h2>" in page and "<b>bold</b>" in page
    assert page.count("<tr>") == 3 and "<th>a AUROC↑</th>" in page  # header + two rows, no separator row
    assert "<td><b>96.3 ± 0.3</b></td>" in page and "<td><u>93.1 ± 0.2</u></td>" in page
    assert page.count("<table") == 1 and page.count("</table>") == 1
    assert '<table class="names-2">' in page  # the scorer and model columns are names: left-aligned


def test_fragment_scrolls_wide_tables_and_shifts_headings():
    """In a page, a table sits in its own scroll box (wider than the window, it scrolls there, not the
    page), and the table's own headings go below the page's."""
    md = "# Title\n\n## ΔAUROC\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## ΔFPR95\n\n| a | b |\n|---|---|\n| 3 | 4 |\n"
    fragment = markdown_fragment(md, top=4)
    assert fragment.startswith("<h4>Title</h4>\n<h5>ΔAUROC</h5>\n")
    assert fragment.count('<div class="table-scroll"><table class="names-1">') == 2 and fragment.count("</table></div>") == 2
    assert "<html" not in fragment and "<style" not in fragment
    assert ".table-scroll{overflow-x:auto" in STYLE.replace(" ", "")
    assert first_heading(md) == "Title" and first_heading("| a |\n") == ""


# ----------------------------------------------------------------------------- the results page
def test_caption_is_rendered_as_snakemake_report_renders_it_but_strictly():
    import jinja2
    from conftest import REPO

    from lffood.report.page import render_caption

    rst = (REPO / "workflow" / "report" / "sensitivity.rst").read_text()
    params = {"watermark": "DRAFT", "paper_reference": {"method": "ReAct", "table": "table2", "auroc": 93.2}}
    out = render_caption(rst, params=params, wildcards={"bench": "cifar10_resnet34"}, config={"results_dir": "res"})
    assert out.startswith("<p><strong>DRAFT</strong>: Sensitivity")
    assert "Table II average: 93.2" in out and "res/tables/cifar10_resnet34_sensitivity.csv" in out
    assert "{" not in out and "}" not in out
    with pytest.raises(jinja2.UndefinedError):  # a param the page does not pass: an error, not an empty string
        render_caption(rst, params={"watermark": None}, wildcards={"bench": "b"}, config={"results_dir": "r"})
    with pytest.raises(Exception, match="(?i)inline literal"):  # a docutils warning (unclosed ``) stops it too
        render_caption("A ``broken literal.", params={}, wildcards={}, config={})


def test_page_embeds_figures_colours_verdicts_and_folds_further_tables(tmp_path):
    import base64

    from lffood.report.page import page

    png = tmp_path / "b_fig.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    table = tmp_path / "b.md"
    table.write_text("# b: results\n\n| Method | AUROC↑ |\n|---|---|\n| LFF | **91.0 ± 0.1** |\n")
    verdicts = tmp_path / "b_vs.md"
    verdicts.write_text("# b: against the control\n\n| Method | Average |\n|---|---|\n| LFF | +1.0 [+0.2, +1.8] win |\n"
                        "| SSOD | −0.5 [−2.0, +1.0] tie |\n")
    more = tmp_path / "b_scorers.md"
    more.write_text("# b: every scorer\n\n| Model | MSP |\n|---|---|\n| CE | 80.0 |\n")
    part = {"bench": "b", "heading": "b: a benchmark", "results": str(table), "verdicts": str(verdicts),
            "figures": [str(png)], "tables": [str(more)]}
    captions = {str(png): "<p>What the figure shows.</p>", str(table): "<p>The table.</p>"}
    out = page([part], captions=captions, title="T", watermark="DRAFT", provenance="commit abc")
    assert f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}"' in out
    assert "<figcaption><p>What the figure shows.</p>" in out and out.index("<img") < out.index("<figcaption>")
    assert '+1.0 [+0.2, +1.8] <span class="v-win">win</span>' in out and '<span class="v-tie">tie</span>' in out
    assert out.index('id="b-verdicts"') < out.index('id="b-results"') < out.index('id="b-figures"')
    assert "<details><summary>b: every scorer</summary>" in out and "<h5>b: every scorer</h5>" not in out
    assert '<p class="watermark">DRAFT:' in out and "Page written by: commit abc" in out
    assert "<b>91.0 ± 0.1</b>" in out and '<div class="caption"><p>The table.</p></div>' in out


def test_leading_name_columns_are_counted_past_a_watermark():
    from lffood.report.html import _name_columns

    assert _name_columns([["average", "LFF", "ReAct", "17.9 ± 32.0", "96.3"]]) == 3
    assert _name_columns([["MSP", "CE", "MARK: 50.0 ± 0.0"]]) == 2
    assert _name_columns([["LFF (ReAct)", "+1.2 [−0.3, +2.7] tie", "–"]]) == 1
    assert _name_columns([["TagFog†", "**95.0**", "<u>93.1</u>"]]) == 1
