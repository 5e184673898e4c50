"""The results page (lffood.report.page) in a real browser: Debian's headless Chromium opens a page built
from small hand-made tables and figures with the workflow's own caption files, takes a screenshot at
1,400 x 1,000 px and dumps the DOM after a small script has measured the layout. Checked: the first
screen shows the results and the verdicts; every figure has its caption under it; no template text is
left; no table or figure is wider than the window unless it scrolls in its own box.

Chromium: ``apt-get install chromium``. Where it is missing the test installs it in CI as root (as the
SLURM tests install SLURM, waiting for the package manager's lock) and skips elsewhere with the reason.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from lffood.report.page import render_caption, write_page

WIDTH, HEIGHT = 1400, 1000
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CAPTIONS = REPO / "workflow" / "report"
FIGURES = ("feature_norms", "local_norms", "auroc_bars", "heatmaps", "tsne", "sensitivity")
OOD = ("backgrounds", "novel_digits", "textures", "far")
METHODS = (("CE", "ReAct"), ("CE control", "ReAct"), ("LFF", "ReAct"), ("SSOD", "SSOD head"), ("MODE-F", "CSD"))


# ----------------------------------------------------------------------------- the browser
def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _installed() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's path; installed with apt-get in CI as root (bounded, waiting for apt's lock)."""
    found = _installed()
    if found:
        return found
    if not (_in_ci() and os.geteuid() == 0 and shutil.which("apt-get")):
        pytest.skip("no Chromium here (apt-get install chromium); it is installed automatically only in CI as root")
    sys.path.insert(0, str(REPO / "tests" / "cluster"))
    from localslurm import SlurmUnavailable, apt_get

    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        proc = apt_get("install", "-y", "-q", "--no-install-recommends", "chromium", env=env, lock_wait=300)
        if proc.returncode != 0:  # a fresh container has no package lists yet
            apt_get("update", "-q", env=env, lock_wait=300)
            proc = apt_get("install", "-y", "-q", "--no-install-recommends", "chromium", env=env, lock_wait=300)
    except SlurmUnavailable as exc:  # the package manager's lock stayed taken
        pytest.fail(f"cannot install Chromium: {exc}")
    found = _installed()
    if not found:
        pytest.fail(f"apt-get install chromium failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-800:]}")
    return found


def _run(chromium: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--window-size={WIDTH},{HEIGHT}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


# ----------------------------------------------------------------------------- the page, from small artifacts
def _md_table(title: str, notes: list[str], header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table as the table writers write one (lffood.report.tables)."""
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _figure(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), dpi=100)  # 1,500 px wide: wider than the window
    for ax in axes:
        ax.hist(rng.normal(size=400), bins=30, color="tab:blue", alpha=0.7)
        ax.hist(rng.normal(1.5, size=400), bins=30, color="tab:orange", alpha=0.7)
    fig.suptitle(path.stem)
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The page (in a results/ tree as the workflow lays it out), its captions and parts."""
    root = tmp_path_factory.mktemp("page")
    tables, figures = root / "results" / "tables", root / "results" / "figures"
    tables.mkdir(parents=True)
    figures.mkdir(parents=True)
    header = ["OOD set", "Method", "Scorer", "AUROC↑", "FPR95↓", "AUPR-In↑", "AUPR-Out↑", "ID acc↑"]
    rows = [[s, m, sc, f"{90 + i:.1f} ± 0.{i}", f"{30 - i:.1f} ± 1.{i}", f"{91 + i:.1f} ± 0.2", "88.0 ± 0.4", "97.1"]
            for s in (*OOD, "Average") for i, (m, sc) in enumerate(METHODS)]
    rows[2][3] = f"**{rows[2][3]}**"
    (tables / "embedded.md").write_text(_md_table(
        "embedded: shapes on backgrounds", ["Mean ± standard deviation over 2 seeds, in percent.",
                                            "Primary table: each method with its own scorer."], header, rows))
    verdict_rows = [[f"{m} ({sc})", *(f"+{i}.{j} [−0.{j}, +{i + 1}.{j}] {v}" for j in range(len(OOD) + 1))]
                    for i, ((m, sc), v) in enumerate(zip(METHODS[2:] + METHODS[:1], ("win", "tie", "loss", "tie")))]
    verdict_table = _md_table("", [], ["Method (scorer) − control", *OOD, "Average"], verdict_rows).split("\n", 2)[2]
    verdicts = ("# embedded: every method against the CE control\n\nPercentage points; method − control, paired per "
                "seed; win / loss only when the interval excludes 0, else tie.\n\n"
                f"## ΔAUROC\n\n{verdict_table}\n## ΔFPR95\n\n{verdict_table}")
    (tables / "embedded_vs_control.md").write_text(verdicts)
    scorers = ["MSP", "ODIN", "Mahalanobis", "Energy", "ViM", "KNN", "DICE", "ReAct", "FeatureNorm", "LiNe"]
    (tables / "embedded_scorers.md").write_text(_md_table(
        "embedded: every scorer on every model", [], ["Model", *scorers],
        [[m, *(f"{80 + k:.1f} ± 0.{k}" for k in range(len(scorers)))] for m, _ in METHODS]))
    # a paper table as wide as the real ones: 6 OOD sets x 2 metrics, each cell reproduced (printed, difference)
    sets = ["SVHN", "LSUN-Crop", "LSUN-Resize", "iSUN", "Textures", "Places365", "Average"]
    (tables / "table1.md").write_text(_md_table(
        "Table I: CIFAR-10, ResNet-34", [], ["Method", *(f"{s} {m}" for s in sets for m in ("FPR95↓", "AUROC↑"))],
        [[m, *("52.3 ± 1.2 (paper 50.1, +2.2)" for _ in range(2 * len(sets)))] for m, _ in METHODS]))
    for i, name in enumerate(FIGURES):
        _figure(figures / f"embedded_{name}.png", i)

    rel = lambda p: str(p.relative_to(root))  # noqa: E731  the workflow's paths are relative to its folder
    config = {"results_dir": "results", "watermark": None}
    params = {"watermark": None, "paper_table": "table1",
              "paper_reference": {"method": "ReAct", "table": "table1", "auroc": 93.2}}
    caption = lambda name, **wc: render_caption((CAPTIONS / f"{name}.rst").read_text(), params=params,  # noqa: E731
                                                wildcards={"bench": "embedded", **wc}, config=config)
    part = {"bench": "embedded", "heading": "embedded: shapes on backgrounds", "summary": "Seeds 0, 1; model resnet.",
            "results": rel(tables / "embedded.md"), "verdicts": rel(tables / "embedded_vs_control.md"),
            "figures": [rel(figures / f"embedded_{f}.png") for f in FIGURES],
            "tables": [rel(tables / "embedded_scorers.md")]}
    captions = {part["results"]: caption("table"), part["verdicts"]: caption("vs_control"),
                part["tables"][0]: caption("scorer_table"), rel(tables / "table1.md"): caption("paper_table",
                                                                                               table="table1"),
                **{p: caption(f, figure=f) for p, f in zip(part["figures"], FIGURES)}}
    out = root / "results" / "report" / "index.html"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_page(rel(out), [part], paper_tables=[rel(tables / "table1.md")], captions=captions,
                   title="LFF: results", intro="A reproduction.", provenance="commit abc; a CPU")
    finally:
        os.chdir(cwd)
    return out, captions, part


class _Text(HTMLParser):
    """The text of a page outside <script> and <style>, and the text of each <figcaption>."""

    def __init__(self):
        super().__init__()
        self.text, self.captions, self._skip, self._caption = [], [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag == "figcaption" and self._caption is not None:
            self.captions.append(_words("".join(self._caption)))
            self._caption = None

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)
            if self._caption is not None:
                self._caption.append(data)


def _words(text: str) -> str:
    return " ".join(text.split())


def _text_of(html_text: str) -> _Text:
    parser = _Text()
    parser.feed(html_text)
    return parser


PROBE = """<script>
window.addEventListener("load", () => {
  const view = document.documentElement.clientWidth, box = e => e.getBoundingClientRect();
  const tables = [...document.querySelectorAll("table")].filter(t => t.offsetParent !== null).map(t => ({
    width: box(t).width, holder: box(t.parentElement).width, overflow: getComputedStyle(t.parentElement).overflowX}));
  const images = [...document.images].map(i => ({width: box(i).width, natural: i.naturalWidth}));
  const top = id => box(document.getElementById(id)).top;
  const probe = document.createElement("pre");
  probe.id = "layout-probe";
  probe.textContent = JSON.stringify({view, height: window.innerHeight, page: document.documentElement.scrollWidth,
    tables, images, results: top("embedded-results"), verdicts: top("embedded-verdicts")});
  document.body.appendChild(probe);
});
</script>"""


@pytest.fixture(scope="module")
def browsed(chromium, built, tmp_path_factory):
    """The screenshot and the DOM (with the layout probe's numbers) of the page."""
    page, _, _ = built
    shots = tmp_path_factory.mktemp("browser")
    shot = shots / "results_page.png"
    _run(chromium, f"--screenshot={shot}", page.as_uri())
    probed = page.with_name("probed.html")  # the page with the probe: same folder, same relative paths
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _run(chromium, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()).stdout
    return shot, dom


def _probe(dom: str) -> dict:
    """The layout probe's numbers, from the DOM it wrote them into."""
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S)
    assert found, "the layout probe did not run (no load event within the time budget?)"
    return json.loads(html.unescape(found.group(1)))


# ----------------------------------------------------------------------------- the checks
def test_screenshot_shows_a_page(browsed):
    from matplotlib.image import imread

    shot, _ = browsed
    assert shot.stat().st_size > 20_000, "a blank page is a few kB"
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    dark = (pixels.mean(axis=2) < 0.5).mean()  # text, table lines
    assert 0.005 < dark < 0.5, f"{dark:.3f} of the pixels are dark: blank or unreadable"
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


def test_the_first_screen_shows_the_results_and_the_verdicts(browsed):
    _, dom = browsed
    probe = _probe(dom)
    assert probe["results"] < probe["height"], f"the results start at {probe['results']} px, below the first screen"
    assert probe["verdicts"] < probe["height"], f"the verdicts start at {probe['verdicts']} px, below the first screen"
    text = _words("".join(_text_of(dom).text))
    assert "Results" in text and "Against the CE control" in text
    assert "LFF ReAct **" not in text and "<b>" not in text  # Markdown and markup rendered, not printed
    for verdict in ("win", "tie", "loss"):
        assert re.search(rf'<span class="v-{verdict}">{verdict}</span>', dom), verdict
    assert "92.0 ± 0.2" in text  # a cell of the primary table (LFF on backgrounds, bold there)


def test_every_figure_has_its_caption_under_it(browsed, built):
    _, dom = browsed
    _, captions, part = built
    parsed = _text_of(dom)
    assert len(parsed.captions) == len(part["figures"]) == len(FIGURES)
    assert dom.count("<img ") == len(FIGURES)
    for path, shown in zip(part["figures"], parsed.captions):
        expected = _words("".join(_text_of(captions[path]).text))
        assert expected and shown.startswith(expected), f"{path}: caption not under its figure"
    text = _words("".join(parsed.text))
    for path in (part["results"], part["verdicts"], "results/tables/table1.md"):
        assert _words("".join(_text_of(captions[path]).text)) in text, path


def test_no_template_text_is_left(browsed):
    _, dom = browsed
    text = "".join(_text_of(dom.split('<pre id="layout-probe">')[0]).text)
    for leftover in ("{", "}", "snakemake.", "{{", "{%"):
        assert leftover not in text, f"template text {leftover!r} on the page"
    assert "results/figures/embedded_auroc_bars.csv" in text  # the caption's path, filled in


def test_tables_and_figures_fit_the_window_or_scroll_in_their_box(browsed):
    _, dom = browsed
    probe = _probe(dom)
    view = probe["view"]
    assert view <= WIDTH
    assert probe["page"] <= view, f"the page is {probe['page']} px wide in a {view} px window: it scrolls sideways"
    wide = [t for t in probe["tables"] if t["width"] > view]
    assert wide, "the wide paper table should be wider than the window (else this check checks nothing)"
    for t in probe["tables"]:
        assert t["width"] <= view or (t["overflow"] in ("auto", "scroll") and t["holder"] <= view), t
    assert len(probe["images"]) == len(FIGURES)
    for image in probe["images"]:
        assert image["natural"] > 0, "a figure did not load"
        assert image["width"] <= view, image
