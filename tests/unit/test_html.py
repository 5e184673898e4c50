"""HTML renderings of the Markdown tables for the Snakemake report."""

from lffood.report.html import markdown_to_html


def test_markdown_table_to_html():
    md = ("# Title & more\n\nA note with **bold**.\n\n## block\n\n| Scorer | Model | a AUROC↑ |\n|---|---|---|\n"
          "| ReAct | LFF | **96.3 ± 0.3** |\n| ReAct | CE | <u>93.1 ± 0.2</u> |\n")
    page = markdown_to_html(md, "Title")
    assert page.startswith("<!DOCTYPE html>") and "<title>Title</title>" in page
    assert "<h1>Title &amp; more</h1>" in page and "<h2>block</h2>" in page and "<b>bold</b>" in page
    assert page.count("<tr>") == 3 and "<th>a AUROC↑</th>" in page  # header + two rows, no separator row
    assert "<td><b>96.3 ± 0.3</b></td>" in page and "<td><u>93.1 ± 0.2</u></td>" in page
    assert page.count("<table>") == 1 and page.count("</table>") == 1
