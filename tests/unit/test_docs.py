"""The README and the documentation site: the README stays a ten-minute read, the site builds strictly,
every link stays inside the repository and resolves, the prose speaks to users (no references to how
the project was developed: issues, notes, sessions, commit hashes), and only command forms that work
are shown.

The commands themselves are parsed and dry-run by tests/workflow/test_readme_commands.py.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

README = REPO / "README.md"
CHANGELOG = REPO / "CHANGELOG.md"
DOCS = REPO / "docs"
MAX_README_LINES = 250
RESULTS_BLOCK = re.compile(r"<!-- results:start -->.*?<!-- results:end -->", re.S)


def pages() -> list[Path]:
    """Every Markdown file users read: the README, the CHANGELOG and the site's pages."""
    return [README, CHANGELOG, *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code spans (which quote code, not prose)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]+`", "", text)


# ----------------------------------------------------------------------------------------------- README
def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; at most {MAX_README_LINES}: move detail to docs/"


def test_readme_has_the_quick_start_the_results_block_and_the_figure():
    text = README.read_text()
    quick = re.search(r"^## Quick start\n.*?^```bash\n(.*?)^```", text, re.S | re.M)
    assert quick, "README.md: no Quick start section with a bash block"
    assert quick.group(1).splitlines() == [
        "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/snakemake --cores 2 all",
        ".venv/bin/python -m pytest",
    ]
    assert ".venv/bin/python -m pytest" in (REPO / ".ci" / "run").read_text()  # CI runs the documented command
    assert len(RESULTS_BLOCK.findall(text)) == 1  # `lffood results --write README.md` replaces it
    assert "](docs/img/embedded_auroc_bars.png)" in text


# ------------------------------------------------------------------------------------------------- site
def test_docs_build_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link or anchor, a page left out of nav, or an API page whose
    docstrings do not render fails the build."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip("mkdocs and mkdocstrings are not installed (requirements.txt pins them; pip install -r "
                    "requirements.txt)")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert (tmp_path / "site" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "metrics" / "index.html").read_text()
    assert "fpr_at_tpr" in api and "aupr_out" in api  # the API page rendered lffood.metrics' functions


def test_every_docs_page_is_in_nav():
    """Also checked by the strict build (omitted files warn); here with the file names."""
    import yaml

    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]

    def files(entries):
        for entry in entries:
            for value in entry.values() if isinstance(entry, dict) else [entry]:
                yield from files(value) if isinstance(value, list) else [value]

    listed = set(files(nav))
    present = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert present - listed == set(), "docs pages missing from mkdocs.yml nav"
    assert {"index.md", "quickstart.md", "changelog.md", "troubleshooting.md"} <= listed


# ------------------------------------------------------------------------------------------------ links
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
HTML = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")


def slug(heading: str) -> str:
    """The anchor of a Markdown heading, as GitHub and MkDocs' toc make it (for the headings used here)."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return re.sub(r"\s+", "-", text)


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def link_problems(path: Path, text: str) -> list[str]:
    """Every link of a Markdown text that leaves the repository, escapes its root, or does not resolve
    (file, and the heading of a Markdown anchor)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]+`", "", text)
    problems = []
    for target in LINK.findall(text) + REFERENCE.findall(text) + HTML.findall(text):
        where = f"{rel(path) if path.is_relative_to(REPO) else path}: {target}"
        if EXTERNAL.match(target):
            problems.append(f"{where}: leaves the repository")
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path.resolve()
        if not dest.is_relative_to(REPO.resolve()):
            problems.append(f"{where}: outside the repository")
        elif not dest.exists():
            problems.append(f"{where}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading #{anchor} in {rel(dest)}")
    return problems


def test_links_stay_inside_the_repository_and_resolve():
    problems = [p for page in pages() for p in link_problems(page, page.read_text())]
    assert not problems, "\n".join(problems)


def test_link_check_finds_bad_links(tmp_path):
    """What makes the test above fail."""
    page = DOCS / "index.md"  # resolved as if it were written in docs/
    text = ("[ok](quickstart.md) [ok](troubleshooting.md#retraining-one-model) ![img](img/x.png)\n"
            "[web](https://example.org) [shared](../../shared/reference/methods.md) [gone](nothing.md)\n"
            "[anchor](quickstart.md#no-such-heading) <a href=\"http://example.org\">x</a>\n"
            "`[in code](https://example.org)`\n")
    found = link_problems(page, text)
    assert any("img/x.png: no such file" in p for p in found) == (not (DOCS / "img" / "x.png").exists())
    assert [p for p in found if "img/x.png" not in p] == [
        "docs/index.md: https://example.org: leaves the repository",
        "docs/index.md: ../../shared/reference/methods.md: outside the repository",
        "docs/index.md: nothing.md: no such file",
        "docs/index.md: quickstart.md#no-such-heading: no heading #no-such-heading in docs/quickstart.md",
        "docs/index.md: http://example.org: leaves the repository",
    ]


# ------------------------------------------------------------------------------------------------ prose
#: words that refer to how the project was developed, not to what a user runs or reads. "issue" and
#: "session" have no other use in these pages; "note" has (a table's notes, its caption): only the
#: development sense is matched. Code spans and code blocks are not prose (`Issue(...)` is a class).
PROCESS_WORDS = [
    (re.compile(r"\bissues?\b", re.I), "an issue"),
    (re.compile(r"\bsessions?\b", re.I), "a session"),
    (re.compile(r"\b(?:issue|session|design|development|project|work(?:ing)?|handover|change)[ -]notes?\b", re.I),
     "notes"),
    (re.compile(r"\bnotes of (?:each|every|the|this|that) (?:change|commit|issue|session)s?\b", re.I), "notes"),
    (re.compile(r"\bdevelopment (?:machines?|sessions?|box)\b", re.I), "the development machine"),
    (re.compile(r"\bthis project's (?:\d+-core |development |CPU )?machine\b", re.I), "the development machine"),
    (re.compile(r"(?:\.\./)+shared/|\bshared/reference\b"), "a file outside the repository"),
]
#: a short commit hash (7 hex digits with a letter and a digit) outside the generated results block
COMMIT = re.compile(r"\b(?=[0-9a-f]{0,6}[a-f])(?=[0-9a-f]{0,6}[0-9])[0-9a-f]{7}\b")


def process_references(text: str, hashes: bool = True) -> list[str]:
    """The phrases of a Markdown text that refer to the project's development."""
    text = prose(RESULTS_BLOCK.sub("", text))
    found = [f"{what}: {m.group(0)!r}" for pattern, what in PROCESS_WORDS for m in pattern.finditer(text)]
    if hashes:
        found += [f"a commit hash: {m.group(0)!r}" for m in COMMIT.finditer(text)]
    return found


def test_prose_does_not_refer_to_the_projects_development():
    """History (commits, measured times) belongs in CHANGELOG.md, which may name commits."""
    problems = [f"{rel(page)}: {p}" for page in pages()
                for p in process_references(page.read_text(), hashes=page != CHANGELOG)]
    assert not problems, "\n".join(problems)


def test_process_reference_check_finds_them():
    bad = ("As issue 24 asks, see the performance issue. The session notes say so; in the design notes; "
           "see ../shared/reference/methods.md; 10 minutes on this project's 2-core machine, at commit 86a611d. "
           "Measured figures are in the notes of each change.")
    found = process_references(bad)
    assert len(found) == 9, found
    good = ("The note under the table gives the mean; the notes are its caption; a footnote letter marks it. `Issue(parameter, message)` "
            "is a class. md5 458a0a0a... and sha256 fff73e50...; 4,800 images; deadbeef00 is ten digits.\n"
            "<!-- results:start -->\n_(commit 86a611d)_\n<!-- results:end -->\n")
    assert process_references(good) == []


# --------------------------------------------------------------------------------------- command forms
TEXT_FILES = ["README.md", "CHANGELOG.md", "docs/**/*.md", "Snakefile", "workflow/**/*.smk", "workflow/**/*.py",
              "workflow/report/*.rst", "config.yaml", "profiles/**/*.yaml", "src/lffood/**/*.py",
              "src/lffood/resources/**/*.md", "src/lffood/resources/**/*.yaml", ".ci/run"]
#: options whose values are key=value words (a --forcerun or --until value is a path or a rule: any word)
MULTI_VALUE = {"--resources", "--res", "--config", "-C", "--set-resources"}


def target_after_multi_value_option(text: str) -> list[str]:
    """snakemake command lines in which a word that is no `key=value`, no option and no comment follows an
    option that takes several values: Snakemake reads it as one more value, not as a target."""
    bad = []
    for m in re.finditer(r"\bsnakemake\b([^`\n|\"']*)", text):
        command = re.split(r"\s#\s?|\s\(|[.;,:]\s", m.group(1))[0]
        words = command.split()
        for i, word in enumerate(words):
            if word not in MULTI_VALUE:
                continue
            rest = words[i + 1:]
            values = 0
            while values < len(rest) and "=" in rest[values] and not rest[values].startswith("-"):
                values += 1
            if values and values < len(rest) and not rest[values].startswith("-"):
                bad.append("snakemake" + m.group(1).rstrip())
    return bad


def test_only_working_command_forms():
    """`snakemake --cores 8 --resources gpu=1 all` fails (the target is read as a resource): the README,
    the docs, the workflow's comments and the package show targets first."""
    problems = []
    for pattern in TEXT_FILES:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file():
                problems += [f"{rel(path)}: {c}" for c in target_after_multi_value_option(path.read_text())]
    assert not problems, "targets must come before --resources/--config:\n" + "\n".join(problems)


def test_command_form_check_finds_a_target_after_resources():
    assert target_after_multi_value_option("run `snakemake --cores 8 --resources gpu=1 all` on one GPU")
    assert target_after_multi_value_option("snakemake -n --config seeds=[0] results/tables/embedded.csv\n")
    for good in ("`snakemake all --cores 8 --resources gpu=1` runs one GPU job at a time",
                 "snakemake --cores 8 --resources gpu=1 -- all", "snakemake all --config run=paper --cores 8",
                 "#   snakemake all --cores 8 --resources gpu=1  # targets first: after --resources, it reads"):
        assert not target_after_multi_value_option(good), good


def test_target_after_resources_fails_as_documented():
    """The explanation in the README and docs/compute.md: Snakemake 9's parser takes the target as a resource."""
    from snakemake.cli import get_argument_parser

    message = "dictionary update sequence element #1 has length 1"
    with pytest.raises(ValueError, match=re.escape(message)):
        get_argument_parser().parse_args(["--cores", "8", "--resources", "gpu=1", "all"])
    assert message in README.read_text() and message in (DOCS / "compute.md").read_text()
    args = get_argument_parser().parse_args(["all", "--cores", "8", "--resources", "gpu=1"])
    assert args.targets == ["all"]
