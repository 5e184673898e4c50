"""A non-editable install of lffood works without this repository: the files the library reads (the
config schema, the paper's printed tables, the ImageNet-100 class lists) are package data
(pyproject.toml, ``[tool.setuptools.package-data]``), found through :mod:`importlib.resources`
(:mod:`lffood.resources`), never through the checkout's folders.

The package is built from a copy of the sources into a folder of its own (``pip install --target``
where setuptools can build a wheel; with the pinned setuptools, which needs the ``wheel`` package for
that, its ``build_py``: the step of a wheel build that lays the package out, modules and package data)
and imported from there by a Python that sees neither ``src/`` nor the editable install, in a folder
outside the repository."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import setuptools

from conftest import REPO

PROBE = r"""
import json, sys
import lffood
from lffood import resources
from lffood.cli import main
from lffood.config import load_config
from lffood.data import sources
from lffood.errors import LffoodError
from lffood.report import paper_numbers
from lffood.runtime import workflow_checkout

out = {"file": lffood.__file__, "schema": str(resources.CONFIG_SCHEMA), "paper": str(resources.PAPER_NUMBERS),
       "cells": len(paper_numbers.load()), "wnids": len(sources.read_class_list("II")),
       "run": load_config(sys.argv[1], resources.CONFIG_SCHEMA)["run"],
       "check_config": main(["check-config", sys.argv[1]])}  # the CLI's default schema: the package's
try:
    out["checkout"] = str(workflow_checkout())
except LffoodError as exc:
    out["checkout"] = str(exc)
print(json.dumps(out))
"""


def _builds_wheels() -> bool:
    """Whether setuptools can build a wheel here: its own bdist_wheel (70.1 on), or the ``wheel`` package's."""
    version = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _install(tmp) -> os.PathLike:
    src, target = tmp / "src", tmp / "site"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):  # a copy: a build writes build/ and *.egg-info beside the sources
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if _builds_wheels():
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
               "--target", str(target), str(src)]
    else:
        (src / "setup.py").write_text("from setuptools import setup\n\nsetup()\n")
        cmd = [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(target)]
    proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def test_an_installed_lffood_reads_its_files_from_the_package(tmp_path):
    target = _install(tmp_path)
    shipped = target / "lffood" / "resources"
    for name in ("config.schema.yaml", "paper/lff_tables.csv", "paper/README.md", "imagenet100/class_list_I.txt",
                 "imagenet100/class_list_II.txt", "imagenet100/README.md"):
        assert (shipped / name).is_file(), name
    work = tmp_path / "elsewhere"  # not in or below the repository
    work.mkdir()
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    # -S: no site-packages processing, so not the editable install's .pth; the dependencies by path
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *deps])}
    proc = subprocess.run([sys.executable, "-S", "-c", PROBE, "config.yaml"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(target)) and out["schema"].startswith(str(shipped))
    assert out["paper"].startswith(str(shipped))
    assert out["cells"] > 0 and out["wnids"] == 100 and out["run"] == ["embedded"] and out["check_config"] == 0
    # what needs the workflow's clone (rehearsal, GPU check) says so, outside one
    assert "no clone of the lffood workflow" in out["checkout"] and "--repo" in out["checkout"]
