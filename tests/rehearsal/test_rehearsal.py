"""The rehearsal of the paper benchmarks (`lffood rehearse`): every rule of `snakemake all --config
run=paper` on tiny data in the real upstream formats, served from loopback, with the real backbones
(ResNet-34, WRN-28-10, torchvision ResNet-50), then the HTML report. The tests check that each paper
target exists and parses: every reproduced cell filled and stamped REHEARSAL, the paper column filled,
every figure a non-empty PNG and PDF with no layout warning, the report built.

About 20 minutes on 2 cores, so it is not part of the regular suite: `pytest --rehearsal -m rehearsal`
(`.ci/run` runs it after the suite)."""

from __future__ import annotations

import re
import time

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from lffood import h5schema
from lffood.config import load_config
from lffood.data.arrays import load_split
from lffood.rehearsal import WATERMARK, rehearse, sweep_benchmark
from lffood.variants import variant_names, variant_scorers

pytestmark = pytest.mark.rehearsal

CFG = load_config(REPO / "config.yaml", REPO / "src" / "lffood" / "resources" / "config.schema.yaml")
PAPER = CFG["suites"]["paper"]
FIGURES = ("feature_norms", "local_norms", "auroc_bars", "heatmaps", "tsne")
EXTS = ("csv", "md", "tex", "html")
SWEEP_BENCH = sweep_benchmark(CFG, PAPER)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("rehearsal")
    t0 = time.perf_counter()
    rc = rehearse(work, cores=2)
    print(f"rehearsal of {len(PAPER)} paper benchmarks: {time.perf_counter() - t0:.0f} s, exit {rc}")
    return work, rc


def test_every_rule_ran(run):
    work, rc = run
    assert rc == 0, f"the rehearsal failed: see {work}/.snakemake/log"
    log = sorted((work / ".snakemake" / "log").glob("*.snakemake.log"))[0].read_text()
    ran = set(re.findall(r"^(?:local)?rule (\w+):", log, re.M))
    for rule in ("download", "prepare_cifar", "prepare_imagenet100", "prepare_ood", "train", "extract", "fit_stats",
                 "score", "score_network", "metrics", "table", "scorer_table", "bench_paper_table", "paper_table",
                 "figures", "auroc_bars", "heatmaps", "tsne_vectors", "tsne", "sensitivity"):
        assert rule in ran, f"rule {rule} did not run"


@pytest.mark.parametrize("bench", PAPER)
def test_datasets_in_paper_shapes(run, bench):
    work, _ = run
    ds = CFG["benchmarks"][bench]["dataset"]
    imagenet = ds["source"] == "imagenet100"
    train, test = (load_split(work / "data" / bench / f"{s}.npz") for s in ("train", "test"))
    assert train.images.shape[1:] == ((256, 256, 3) if imagenet else (32, 32, 3))
    assert test.images.shape[1:] == ((224, 224, 3) if imagenet else (32, 32, 3))
    assert len(np.unique(train.labels)) == len(train.meta["classes"])  # every class has a training image
    for s in ds["ood_sets"]:
        ood = load_split(work / "data" / bench / f"{s}.npz")
        assert ood.images.shape[1:] == test.images.shape[1:] and 0 < len(ood) <= 8, s  # the seeded cap


@pytest.mark.parametrize("bench", PAPER)
def test_models_and_features(run, bench):
    work, _ = run
    b = CFG["benchmarks"][bench]
    for v in variant_names(b):
        assert (work / f"results/{bench}/seed0/models/{v}.pt").stat().st_size > 1e6, v  # the real backbone
        with h5py.File(work / f"results/{bench}/seed0/features/{v}.h5") as f:
            assert f.attrs["schema_version"] == h5schema.SCHEMA_VERSION
        metrics = pd.read_csv(work / f"results/{bench}/seed0/metrics/{v}.csv")
        assert set(metrics["scorer"]) == set(variant_scorers(b, v)), v
        assert metrics["auroc"].notna().all(), v


def _reproduced_cells(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in df.columns if c.endswith("_mean")]]


@pytest.mark.parametrize("bench", PAPER)
def test_benchmark_tables(run, bench):
    work, _ = run
    for stem in (bench, f"{bench}_scorers", f"{bench}_table1", f"{bench}_table4"):
        for ext in EXTS:
            text = (work / f"results/tables/{stem}.{ext}").read_text()
            assert WATERMARK in text or WATERMARK.replace("(", r"\(") in text, (stem, ext)
        df = pd.read_csv(work / f"results/tables/{stem}.csv")
        assert len(df) and (df["watermark"] == WATERMARK).all(), stem
        cells = _reproduced_cells(df)
        assert cells.shape[1] and cells.notna().all().all(), stem


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "table4"])
def test_paper_tables(run, table):
    work, _ = run
    df = pd.read_csv(work / f"results/tables/{table}.csv")
    assert "not run" not in set(df["source"]), table
    reproduced = df[df["source"].str.startswith("reproduced")]
    assert len(reproduced) and (reproduced["watermark"] == WATERMARK).all()
    assert _reproduced_cells(reproduced).notna().all().all(), table
    printed = [c for c in df.columns if c.endswith("_paper")]
    assert df[printed].notna().any().all(), "the paper column is empty somewhere"
    paper_only = df[~df["source"].str.startswith("reproduced")]
    assert paper_only["watermark"].isna().all()  # the paper's own numbers are never stamped
    for ext in ("md", "tex", "html"):
        assert (work / f"results/tables/{table}.{ext}").stat().st_size > 500


def _figure_ok(path):
    png = path.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000, path
    pdf = path.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF"), path


@pytest.mark.parametrize("bench", PAPER)
def test_figures(run, bench):
    work, _ = run
    for f in FIGURES:
        _figure_ok(work / f"results/figures/{bench}_{f}.png")
    if bench == SWEEP_BENCH:
        _figure_ok(work / f"results/figures/{bench}_sensitivity.png")
    for log in (work / "logs" / bench).glob("*.log"):
        assert "layout:" not in log.read_text(), log  # every figure reads at 7 inches


def test_report(run):
    work, _ = run
    html = (work / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "REHEARSAL" in html
