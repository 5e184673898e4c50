"""The results page, ``results/report/index.html``: one self-contained HTML file that opens on the results.

Why a page of its own next to ``snakemake --report``: Snakemake's report is a JavaScript application
whose first view is the rule graph, with the workflow description in a narrow column beside it; a
table or figure is one click away in a list, and its caption another click away behind an icon. The
questions a reader opens the report with (how did each method do, did it beat the CE control, what
does each figure show) need the results on the first screen and every caption under its figure.

What it holds, for each benchmark of ``run``: the comparison with the CE control with its verdicts
(win / loss / tie), the primary table, every figure with its caption under it (``<figure>`` and
``<figcaption>``), and the further tables folded under their titles; then the paper's Tables I-IV
that the run rebuilds, each with the paper's printed numbers beside the reproduced ones. Tables scroll sideways inside their own box when wider than the window.

One source for captions: the reStructuredText files of ``workflow/report/`` that ``snakemake --report``
renders, rendered here the same way (Jinja with ``snakemake.params`` / ``wildcards`` / ``config``, then
docutils) by :func:`render_caption`, in the Snakemake process, which always has Jinja and docutils.
Figures are embedded as ``data:`` URIs, so the file can be moved, mailed, or shown inside Snakemake's
report (where the rule registers it), without the folders next to it.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

from .html import STYLE, first_heading, markdown_fragment

PAGE_STYLE = STYLE + """
body{max-width:1400px;margin:0 auto;padding:0 1.2em 3em;line-height:1.45}
header{border-bottom:2px solid #446;margin-bottom:1em}h1{font-size:1.6em;margin:0.6em 0 0.3em}
h2{font-size:1.35em;margin-top:1.6em;border-bottom:1px solid #ccd}h3{font-size:1.15em;margin-top:1.3em}
h4{font-size:1.02em}h5{font-size:0.95em}.provenance{color:#555;font-size:0.92em}
.watermark{background:#fee;border:1px solid #c66;padding:0.4em 0.8em;font-weight:bold}
nav ul{margin:0.3em 0;padding-left:1.2em}
figure{margin:1.2em 0 2em;max-width:100%}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption,.caption{font-size:0.95em;color:#333;max-width:75em}figcaption p,.caption p{margin:0.4em 0}
.v-win{color:#075;font-weight:bold}.v-loss{color:#b00;font-weight:bold}.v-tie{color:#666}
details{margin:0.6em 0}summary{cursor:pointer;font-weight:600}code,tt{background:#f4f4f4;padding:0 0.2em}"""


# ----------------------------------------------------------------------------- captions
def render_caption(rst: str, *, params: Mapping, wildcards: Mapping, config: Mapping) -> str:
    """A caption file of ``workflow/report`` as HTML, rendered as ``snakemake --report`` renders it:
    Jinja (with ``snakemake.params``, ``snakemake.wildcards`` and ``snakemake.config``) then docutils.
    Stricter than Snakemake in two ways, so that a broken caption fails the page instead of showing
    template text or nothing: a name the template uses that the context lacks is an error
    (``StrictUndefined``), and so is any docutils warning."""
    from docutils.core import publish_parts
    from docutils.writers.html4css1 import Writer  # the writer Snakemake's writer_name="html" names
    from jinja2 import Environment, StrictUndefined

    env = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
    snakemake = SimpleNamespace(params=dict(params), wildcards=dict(wildcards), config=config)
    text = env.from_string(rst).render(snakemake=snakemake)
    settings = {"halt_level": 2, "report_level": 5, "file_insertion_enabled": False, "raw_enabled": False,
                "input_encoding": "unicode", "output_encoding": "unicode"}
    return publish_parts(text, writer=Writer(), settings_overrides=settings)["body"].strip()


# ----------------------------------------------------------------------------- page parts
def _verdicts(fragment: str) -> str:
    """Colour the comparison cells' verdicts (``+1.2 [−0.3, +2.7] tie``): the word after the interval."""
    return re.sub(r"(?<=\] )(win|loss|tie)\b", r'<span class="v-\1">\1</span>', fragment)


def _caption(text: str, tag: str = "div") -> str:
    return f'<{tag} class="caption">{text}</{tag}>' if text else ""


def _table(path: str, captions: Mapping[str, str], top: int, verdicts: bool = False) -> str:
    fragment = markdown_fragment(Path(path).read_text(), top=top)
    return (_verdicts(fragment) if verdicts else fragment) + _caption(captions.get(path, ""))


def _folded_table(path: str, captions: Mapping[str, str], top: int) -> str:
    """A further table under its title, unfolded on a click (its own title inside is the summary)."""
    md = Path(path).read_text()
    title = first_heading(md) or Path(path).name
    body = markdown_fragment("\n".join(line for line in md.splitlines() if not line.startswith("# ")), top=top)
    return (f"<details><summary>{html.escape(title)}</summary>\n{body}{_caption(captions.get(path, ''))}\n"
            "</details>")


def _figure(path: str, captions: Mapping[str, str], anchor: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(Path(path).stem.replace("_", " "))
    return (f'<figure id="{anchor}"><img src="data:image/png;base64,{data}" alt="{alt}">\n'
            f"<figcaption>{captions.get(path, '')}<p class=\"provenance\">{html.escape(path)} "
            f"(PDF beside it)</p></figcaption></figure>")


def _anchor(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-").lower() for p in parts)


def bench_section(part: Mapping, captions: Mapping[str, str]) -> str:
    """One benchmark: ``part`` names its ``bench``, ``heading``, ``summary`` (a sentence of what ran),
    the comparison ``verdicts`` (or None), the primary table ``results``, the ``figures`` (PNG paths)
    and the further ``tables`` (Markdown paths). The verdicts come first: they are short and answer
    the first question; on a 1,400 x 1,000 window both start on the first screen for a handful of methods."""
    b = part["bench"]
    out = [f'<section id="{_anchor(b)}">', f"<h2>{html.escape(part['heading'])}</h2>",
           f"<p>{html.escape(part.get('summary', ''))}</p>" if part.get("summary") else ""]
    if part.get("verdicts"):  # first: the short answer (is each method better than the control?), then the numbers
        out += [f'<h3 id="{_anchor(b, "verdicts")}">Against the CE control: verdicts</h3>',
                _table(part["verdicts"], captions, top=4, verdicts=True)]
    out += [f'<h3 id="{_anchor(b, "results")}">Results</h3>', _table(part["results"], captions, top=4)]
    if part.get("figures"):
        out.append(f'<h3 id="{_anchor(b, "figures")}">Figures</h3>')
        out += [_figure(p, captions, _anchor(b, Path(p).stem)) for p in part["figures"]]
    if part.get("tables"):
        out.append(f'<h3 id="{_anchor(b, "tables")}">More tables</h3>')
        out += [_folded_table(p, captions, top=5) for p in part["tables"]]
    out.append("</section>")
    return "\n".join(o for o in out if o)


def page(benches: Sequence[Mapping], *, paper_tables: Sequence[str] = (), captions: Mapping[str, str],
         title: str, intro: str = "", provenance: str = "", watermark: str | None = None) -> str:
    """The complete page (module docstring): ``benches`` as :func:`bench_section` takes them, the
    ``paper_tables`` (Markdown paths), ``captions`` (artifact path -> caption HTML, :func:`render_caption`)."""
    nav = [f'<li><a href="#{_anchor(p["bench"])}">{html.escape(p["heading"])}</a></li>' for p in benches]
    if paper_tables:
        nav.append('<li><a href="#paper-tables">The paper\'s tables, reproduced</a></li>')
    head = ["<header>", f"<h1>{html.escape(title)}</h1>",
            f'<p class="watermark">{html.escape(watermark)}: every reproduced number and figure on this page carries '
            "this mark.</p>" if watermark else "",
            f"<p>{html.escape(intro)}</p>" if intro else "",
            f'<p class="provenance">Page written by: {html.escape(provenance)}</p>' if provenance else "",
            f"<nav><ul>{''.join(nav)}</ul></nav>", "</header>"]
    body = [bench_section(p, captions) for p in benches]
    if paper_tables:
        body += ['<section id="paper-tables"><h2>The paper\'s tables, reproduced</h2>',
                 *(_table(p, captions, top=3) for p in paper_tables), "</section>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head>\n<body>\n"
            + "\n".join(h for h in head if h) + "\n<main>\n" + "\n".join(body) + "\n</main>\n</body></html>\n")


def write_page(out: str, benches: Sequence[Mapping], **kwargs) -> None:
    """:func:`page`, written atomically to ``out``."""
    from ..io import atomic_path

    text = page(benches, **kwargs)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
