"""Shared test helpers: the repository root and a Snakemake runner isolated in a temporary directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "src" / "lffood" / "resources" / "config.schema.yaml"  # lffood.resources.CONFIG_SCHEMA
MICRO = REPO / "tests" / "configs" / "micro.yaml"


def snakemake(workdir: Path, *args: str, config: Path | None = None, check: bool = True, timeout: int = 300):
    """Run the repository's Snakefile with ``workdir`` as working directory (results, logs and
    .snakemake metadata stay there). ``config`` is copied to ``workdir/config.yaml``."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        shutil.copy(config, workdir / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(stdout: str) -> dict[str, int]:
    """Rule -> number of jobs, from the 'Job stats' table Snakemake prints (empty if none)."""
    table = stdout.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in stdout else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def workflow_rules() -> dict[str, str]:
    """Rule name -> its text, from workflow/rules/*.smk."""
    text = "".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    parts = re.split(r"^rule (\w+):\n", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def gpu_rules() -> set[str]:
    """Rules that declare a GPU (``resources: gpu=1``, or the benchmark's ``train_gpus``): training,
    extraction, network scorers."""
    return {name for name, body in workflow_rules().items()
            if re.search(r'^\s+gpu=(1|compute\("train_gpus"\)),?$', body, re.M)}


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def pytest_addoption(parser):
    parser.addoption("--rehearsal", action="store_true", default=False,
                     help="also run the rehearsal of the paper benchmarks (tests/rehearsal, about 20 minutes on "
                          "2 cores; .ci/run runs it after the suite)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--rehearsal"):
        return
    skip = pytest.mark.skip(reason="the rehearsal of the paper benchmarks runs with --rehearsal (.ci/run does)")
    for item in items:
        if "rehearsal" in item.keywords:
            item.add_marker(skip)
