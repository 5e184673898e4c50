"""Every command line of README.md and of the documentation pages (docs/**/*.md) that runs snakemake or
lffood, exercised.

Commands are collected from the ```bash blocks (every line: `&&` chains split, comments dropped) and
from inline code that starts with a snakemake or lffood command. Each one is

* snakemake: parsed with Snakemake's own argument parser, then planned with a dry run (`-n`) in a
  temporary directory on the shipped config. Commands that differ only in targets, `--cores` and `--resources` share one dry run
  (each dry run costs seconds), and the paper-table, `run=paper` and `--lint` plans are left to the
  tests that already make them (PLANNED_ELSEWHERE, checked to still do so);
* lffood: run for real when it is cheap (`--help`, `check-config`, `scorers`, `objectives`,
  `download --list`);
* or listed below with the reason it is not run here (data, a GPU, network, conda, a finished run).

A documented command this test does not know how to handle (another program, an lffood subcommand
without a policy, an unknown `<placeholder>`) fails `test_every_readme_command_is_handled`. That a target
written after `--resources` fails, as the documentation says, is checked in tests/unit/test_docs.py.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from conftest import REPO, snakemake

README = REPO / "README.md"
#: the pages whose commands are exercised: the README and every page of the documentation site
DOCUMENTED = [README, *sorted((REPO / "docs").rglob("*.md"))]
SNAKEMAKE = ("snakemake", ".venv/bin/snakemake")
LFFOOD = ("lffood", ".venv/bin/lffood")

#: README placeholders and what the tests put in their place
PLACEHOLDERS = {"<bench>": "embedded", "<split>": "resources/data/embedded/train.npz", "[PATH ...]": "", "<file>": "results/tables/embedded.csv"}
#: `...` at the end of a command: "the options of the line above" (README, paper tables)
ELLIPSIS = "..."

#: commands of the bash blocks that run neither snakemake nor lffood, and why they are not run here
OTHER_COMMANDS = {
    "python3 -m venv .venv": "creates the environment these tests run in",
    ".venv/bin/pip install -r requirements.txt": "installs from PyPI (no network here); tests/unit/test_envs.py checks "
                                                 "the pins",
    ".venv/bin/python -m pytest": "the test suite itself",
    ".venv/bin/mkdocs build --strict": "builds the documentation site: tests/unit/test_docs.py::test_docs_build_strictly "
                                       "builds it the same way, into a temporary folder",
    ".venv/bin/mkdocs serve": "serves the documentation site until stopped (a web server)",
}
#: snakemake options whose commands are not planned here, and why
SNAKEMAKE_NOT_RUN = {
    "--conda-create-envs-only": "creates the conda environments: needs conda and the conda-forge channel (no network "
                                "here); tests/unit/test_envs.py checks the environment files",
    "--report": "bundles the tables and figures of a finished run (none here); the captions are checked by --lint",
    "--unlock": "removes the lock a killed Snakemake left (tests/workflow/test_resume.py::"
                "test_killed_training_resumes_after_its_last_epoch runs it after killing Snakemake)",
}
#: lffood subcommands that are not run here, and why
LFFOOD_NOT_RUN = {
    "smoke": "trains every objective on random data: minutes on a CPU, meant for a GPU node "
             "(tests/unit/test_backbones.py::test_smoke_reports_every_stage runs a tiny one)",
    "results": "needs the metrics of a finished run (tests/unit/test_summary.py)",
    "benchmarks": "needs the benchmark files of a finished run (tests/unit/test_cli.py::test_benchmarks_summary)",
    "inspect": "needs an HDF5 file of a run (tests/unit/test_cli.py: every kind)",
    "verify": "needs split files, which only the data rules write (tests/unit/test_data.py: lffood verify)",
    "generate-embedded": "writes the generated benchmark (tests/unit/test_cli.py::test_generate_and_inspect)",
    "download": "downloads archives (no network here); `lffood download --list` is run",
    "rehearse": "runs every rule of the five paper benchmarks (about 20 minutes on 2 cores): tests/rehearsal, which "
                ".ci/run runs after the suite (pytest --rehearsal -m rehearsal)",
    "project": "writes into a docs page or reads a gpu-check file: tests/unit/test_projection.py runs every form "
               "(printing, --write into a page of its own, --gpu-check from a file)",
    "gpu-check": "measures paper sizes on a GPU (none here); tests/unit/test_gpucheck.py runs it with --tiny on the "
                 "CPU",
    "evaluate": "scores a model trained elsewhere from its features or arrays on disk (files that the examples "
                "name and this test does not have); tests/unit/test_evaluate.py runs it",
    "bench": "times every part of the pipeline on random data (a minute or two, figures to read, no verdict); "
             "tests/unit/test_models_training.py::test_training_step_makes_no_host_synchronisation uses its sync "
             "counter",
}
#: lffood commands that are run (subcommand -> what the output must contain)
LFFOOD_RUN = {"--help": "check-config", "check-config": ": valid", "scorers": "knn", "objectives": "lff",
              "download --list": "cifar10"}
#: environment variables that do not change what Snakemake plans (the jobs read them)
PLAN_NEUTRAL_ENV = {"CUDA_VISIBLE_DEVICES", "LFFOOD_JOBS_PER_GPU"}
#: dry runs that another test makes already, with its job counts checked (each about 20 s on 2 cores,
#: so not repeated here): (target, plan options) -> (test, what its source must contain)
PLANNED_ELSEWHERE = {
    ("all", ("--config", "run=paper")): ("tests/workflow/test_paper_targets.py::"
                                         "test_run_paper_switch_plans_every_paper_benchmark",
                                         '"all", "--config", "run=paper"'),
    **{(f"results/tables/table{i}.csv", ()): ("tests/workflow/test_paper_targets.py::test_paper_table_graph_without_data",
                                              f'"table{i}"') for i in range(1, 5)},
    ("all", ("--lint",)): ("tests/workflow/test_dryrun.py::test_lint_is_clean", '"--lint"'),
    ("all", ("--config", "run=baselines")): ("tests/workflow/test_dryrun.py::"
                                             "test_baselines_switch_plans_the_training_baselines_only",
                                             '"all", "--config", "run=baselines"'),
}


def readme_commands(text: str | None = None) -> list[str]:
    """The command lines of one Markdown text (default: README.md and every documentation page), in order,
    each once."""
    if text is None:
        return list(dict.fromkeys(c for page in DOCUMENTED for c in readme_commands(page.read_text())))
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            tokens = shlex.split(line, comments=True)
            while tokens:
                cut = tokens.index("&&") if "&&" in tokens else len(tokens)
                out.append(" ".join(tokens[:cut]))
                tokens = tokens[cut + 1:]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`]+)`", prose):
        words = span.split()
        program = next((w for w in words if not re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w)), None)
        if program in SNAKEMAKE + LFFOOD:
            out.append(" ".join(words))
    return list(dict.fromkeys(c for c in out if c))


def handle(command: str) -> tuple[str, object]:
    """How a documented command is exercised: ("snakemake", (env, argv)), ("lffood", argv) or
    ("not run", reason). Raises LookupError when it does not know."""
    if command in OTHER_COMMANDS:
        return "not run", OTHER_COMMANDS[command]
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    if re.search(r"<[^>]+>", command):
        raise LookupError(f"unknown placeholder in {command!r}: add it to PLACEHOLDERS")
    tokens = shlex.split(command)
    env = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
        name, value = tokens.pop(0).split("=", 1)
        env[name] = value
    if not tokens:
        raise LookupError(f"no program in {command!r}")
    program, args = tokens[0], [t for t in tokens[1:] if t != ELLIPSIS]
    if program in SNAKEMAKE:
        for flag, reason in SNAKEMAKE_NOT_RUN.items():
            if flag in args:
                return "not run", reason
        return "snakemake", (env, [str(REPO / a) if a.startswith("profiles/") else a for a in args])
    if program in LFFOOD:
        sub = "--help" if not args or args[0] in ("-h", "--help") else args[0]
        if sub == "download" and (len(args) == 1 or "--list" in args):
            return "lffood", args
        if sub in LFFOOD_NOT_RUN:
            return "not run", LFFOOD_NOT_RUN[sub]
        if sub in LFFOOD_RUN:
            return "lffood", args
        raise LookupError(f"lffood subcommand {sub!r} in {command!r}: add it to LFFOOD_RUN or LFFOOD_NOT_RUN")
    raise LookupError(f"{command!r} runs {program!r}: add it to OTHER_COMMANDS with the reason it is not run")


def _kind(command: str) -> str:
    """handle()'s verdict, "unknown" where it has none (reported by test_every_readme_command_is_handled)."""
    try:
        return handle(command)[0]
    except LookupError:
        return "unknown"


def _parse(argv):
    from snakemake.cli import get_argument_parser, parse_config

    args = get_argument_parser().parse_args(argv)
    parse_config(args.config)  # raises on what Snakemake's command line refuses (e.g. a dotted key)
    return args


#: options that change how many jobs run at once, or whether they run, not what is planned
PLAN_NEUTRAL = {"--cores": 1, "-c": 1, "--jobs": 1, "-j": 1, "--resources": "+", "--res": "+", "-n": 0,
                "--dry-run": 0, "--dryrun": 0}


def _plan_key(options: list[str]) -> tuple[str, ...]:
    """The options of a command that decide what a dry run plans: without PLAN_NEUTRAL ones."""
    key, i = [], 0
    while i < len(options):
        n = PLAN_NEUTRAL.get(options[i])
        if n is None:
            key.append(options[i])
            i += 1
            continue
        i += 1
        if n == "+":  # every value up to the next option
            while i < len(options) and not options[i].startswith("-"):
                i += 1
        else:
            i += n
    return tuple(key)


def _plans() -> dict[str, dict]:
    """Snakemake commands grouped into dry runs: commands that agree apart from targets, --cores,
    --resources and -n share one (the union of their targets, the options of the first)."""
    plans: dict[tuple, dict] = {}
    for command in readme_commands():
        if _kind(command) != "snakemake":
            continue
        env, argv = handle(command)[1]
        try:
            args = _parse(argv)
        except Exception:  # reported by test_snakemake_command_line_parses
            continue
        targets = sorted(args.targets) or ["all"]  # the default target (tests/workflow/test_dryrun.py)
        options = [a for a in argv if a not in args.targets and a != "--"]
        assert not _parse(options).targets, f"cannot separate the targets of {command!r}"
        if all((t, _plan_key(options)) in PLANNED_ELSEWHERE for t in targets) and not env:
            continue
        key = (_plan_key(options), tuple(sorted((k, v) for k, v in env.items() if k not in PLAN_NEUTRAL_ENV)))
        plan = plans.setdefault(key, {"commands": [], "targets": [], "options": options, "env": env})
        plan["commands"].append(command)
        plan["targets"] += [t for t in targets if t not in plan["targets"]
                            and (t, _plan_key(options)) not in PLANNED_ELSEWHERE]
    return {" | ".join(p["commands"]): p for p in plans.values()}


def _planned_elsewhere() -> dict[str, list[tuple[str, str]]]:
    """README snakemake commands whose every target is planned by another test."""
    out = {}
    for command in readme_commands():
        if _kind(command) == "snakemake":
            env, argv = handle(command)[1]
            args = _parse(argv)
            options = _plan_key([a for a in argv if a not in args.targets and a != "--"])
            hits = [PLANNED_ELSEWHERE.get((t, options)) for t in sorted(args.targets) or ["all"]]
            if all(hits) and not env:
                out[command] = hits
    return out


def test_every_readme_command_is_handled():
    commands = readme_commands()
    assert ".venv/bin/snakemake -n" in commands and ".venv/bin/lffood --help" in commands  # the parser finds them
    assert len(commands) >= 25
    unknown = []
    for command in commands:
        try:
            handle(command)
        except LookupError as exc:
            unknown.append(str(exc))
    assert not unknown, "documented commands this test does not know how to exercise:\n" + "\n".join(unknown)
    used = set(commands)
    stale = [c for c in OTHER_COMMANDS if c not in used]
    assert not stale, f"listed here but no longer in the README or the docs: {stale}"


def test_docs_pages_are_read():
    """The commands of the documentation pages are collected, not only the README's."""
    pages = {p.relative_to(REPO).as_posix() for p in DOCUMENTED}
    assert "README.md" in pages and "docs/troubleshooting.md" in pages and "docs/compute.md" in pages
    docs_only = set(readme_commands()) - set(readme_commands(README.read_text()))
    assert ".venv/bin/snakemake --profile profiles/slurm all" in docs_only  # docs/compute.md


def test_unknown_commands_are_refused():
    """What makes the test above fail: a command it has no policy for."""
    text = "```bash\n.venv/bin/lffood frobnicate\nmake all\n```\nor `snakemake results/<thing>.csv`\n"
    assert readme_commands(text) == [".venv/bin/lffood frobnicate", "make all", "snakemake results/<thing>.csv"]
    for command in readme_commands(text):
        with pytest.raises(LookupError):
            handle(command)


@pytest.mark.parametrize("command", [c for c in readme_commands() if _kind(c) == "snakemake"])
def test_snakemake_command_line_parses(command):
    """Snakemake's own parser takes each documented command as written."""
    _parse(handle(command)[1][1])


PLANS = _plans()


@pytest.mark.parametrize("name", list(PLANS), ids=[p["commands"][0] + (f" (+{len(p['commands']) - 1})" if
                                                                      len(p["commands"]) > 1 else "")
                                                   for p in PLANS.values()])
def test_snakemake_commands_plan(tmp_path, monkeypatch, name):
    """One dry run per group of commands (see _plans); each planned target must appear in the plan."""
    plan = PLANS[name]
    if "conda" in plan["options"] and not shutil.which("conda"):
        pytest.skip("--sdm conda needs conda on PATH (Snakemake runs `conda info` even in a dry run); "
                    "tests/unit/test_envs.py checks the environments statically")
    for k, v in plan["env"].items():
        monkeypatch.setenv(k, v)
    proc = snakemake(tmp_path, "-n", *plan["targets"], *plan["options"], config=REPO / "config.yaml", timeout=600)
    out = proc.stdout
    if "--lint" in plan["options"]:
        assert "Congratulations, your workflow is in a good condition!" in out + proc.stderr
        return
    assert "This was a dry-run" in out or "Nothing to be done" in out, out[-2000:]
    for target in plan["targets"]:
        assert target == "all" or target in out, f"{target} not planned by {name}"


@pytest.mark.parametrize("command", [c for c in readme_commands() if _kind(c) == "lffood"])
def test_lffood_command_runs(command, monkeypatch, capsys):
    from lffood.cli import main

    argv = handle(command)[1]
    monkeypatch.chdir(REPO)  # relative paths in the README (config.yaml) are from the repository root
    try:
        rc = main(argv)
    except SystemExit as exc:  # --help
        rc = exc.code
    out = capsys.readouterr().out
    assert rc == 0, out
    sub = "--help" if not argv or argv[0] in ("-h", "--help") else "download --list" if argv[0] == "download" else argv[0]
    assert LFFOOD_RUN[sub] in out, out[-2000:]


def test_commands_planned_by_other_tests():
    """The dry runs left to other tests are still made there; every entry is still a documented command."""
    elsewhere = _planned_elsewhere()
    assert any("run=paper" in c for c in elsewhere)  # the one switch of the paper benchmarks (README, docs/paper.md)
    used = set()
    for command, hits in elsewhere.items():
        for test, snippet in hits:
            path, func = test.split("::")
            source = (REPO / path).read_text()
            assert f"def {func}(" in source, f"{command}: {test} is gone"
            body = source.split(f"def {func}(", 1)[1].split("\ndef ", 1)[0]
            head = source.split(f"def {func}(", 1)[0].rsplit("\n\n\n", 1)[-1]  # its decorators
            assert snippet in head + body, f"{command}: {test} no longer plans {snippet}"
            used.add((test, snippet))
    stale = [k for k, v in PLANNED_ELSEWHERE.items() if v not in used]
    assert not stale, f"PLANNED_ELSEWHERE entries no README command needs: {stale}"


def test_not_run_reasons_name_existing_tests():
    """The reasons that point at other tests stay true."""
    for reason in [*LFFOOD_NOT_RUN.values(), *SNAKEMAKE_NOT_RUN.values(), *OTHER_COMMANDS.values()]:
        for path, _, func in re.findall(r"(tests/[\w/]+\.py)(::(\w+))?", reason):
            assert (REPO / path).is_file(), reason
            if func:
                assert f"def {func}(" in (REPO / path).read_text(), reason
