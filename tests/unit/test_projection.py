"""lffood.projection: counted FLOPs against hand counts and published figures, the FLOP-limit rates,
the scoring stages, the projection from measured rates, the docs' generated block and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lffood import costs, projection
from lffood.cli import main
from lffood.config import load_config
from lffood.resources import CONFIG_SCHEMA

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "paper.md"


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "config.yaml", CONFIG_SCHEMA)


def test_flops_of_a_small_resnet_by_hand():
    """blocks [1], widths [4], 2 classes, 8 x 8 images. Multiply-adds per image: stem 3x3 conv 3 -> 4
    on 8 x 8: 3 * 4 * 9 * 64 = 6912; the block's two 3x3 convs 4 -> 4: 9216 each; head 4 -> 2: 8; in all
    25,352, i.e. 50,704 FLOPs forward. Training adds the weight gradients (25,352) and the input
    gradients of every layer but the stem, whose input needs none (9216 + 9216 + 8): 138,288 FLOPs.
    ODIN: forward, every input gradient including the stem's, forward: 3 x 25,352 x 2 = 152,112."""
    w = projection.count_work({"arch": "resnet", "blocks": [1], "widths": [4]}, 2, 8)
    assert w.forward == 50_704
    assert w.train == 2 * (25_352 + 25_352 + 9216 + 9216 + 8) == 138_288
    assert w.odin == 152_112
    assert w.ops_per_step > 0


def test_flops_of_the_paper_networks_match_published_counts():
    """Multiply-adds of one forward pass as published: torchvision's ResNet-50 (1000 classes) 4.09 G
    (its weights' metadata, GFLOPS counted as multiply-adds); CIFAR ResNet-34 1.16 G; WRN-28-10 5.25 G
    (Zagoruyko & Komodakis' 36.5M-parameter network at 32 x 32)."""
    r50 = projection.count_work({"arch": "resnet50"}, 1000, 224)
    assert r50.forward / 2 == pytest.approx(4.089e9, rel=1e-3)
    r34 = projection.count_work({"arch": "resnet34"}, 10, 32)
    assert r34.forward / 2 == pytest.approx(1.16e9, rel=1e-2)
    wrn = projection.count_work({"arch": "wrn28_10", "dropout": 0.0}, 10, 32)
    assert wrn.forward / 2 == pytest.approx(5.25e9, rel=1e-2)
    for w in (r50, r34, wrn):  # backward: about twice the forward (no input gradient of the first layer)
        assert 2.9 < w.train / w.forward <= 3.0


def test_flop_limit_rates_are_the_peak_over_the_counted_work(cfg):
    bench = cfg["benchmarks"]["cifar10_resnet34"]
    w = projection.count_work(bench["model"], 10, 32)
    m = projection.H100
    r = projection.flop_limit_rates(bench, m)
    assert bench["amp"] is True
    assert r.train[("ce", 128)] == pytest.approx(m.bf16 / w.train)
    assert r.train[("alpa", 128)] == r.train[("ce", 128)]  # per image through the network; views count apart
    assert r.extract_eval == pytest.approx(m.bf16 / w.forward)
    assert r.extract_train == pytest.approx(m.bf16 / (2 * w.forward))  # FeatureNorm's jigsaw pass
    assert r.network == {"odin": pytest.approx(m.bf16 / w.odin)}
    assert r.search_pairs_per_s == pytest.approx(m.fp32 / 1024)
    no_amp = dict(bench, amp=False)
    assert projection.flop_limit_rates(no_amp, m).train[("ce", 128)] == pytest.approx(m.tf32 / w.train)


def test_scoring_splits_the_searches_from_the_cpu_scorers(cfg):
    """Every variant's k-NN searches at the given rate and on the CPU cores; the other fits and scores on
    the cores; each from lffood.costs' model, times the seeds."""
    bench = cfg["benchmarks"]["cifar10_resnet34"]
    sizes = costs.benchmark_sizes(bench)
    s = projection.scoring(bench, 16, 1e9)
    knn, knn_cpu, cpu = 0.0, 0.0, 0.0
    from lffood.scorers import scorer_class
    from lffood.variants import variant_names, variant_scorers
    for v in variant_names(bench):
        for sc in variant_scorers(bench, v):
            for stage, params in costs.scorer_stages(bench, sc):
                c = costs.scorer_cost(sc, params, sizes, stage)
                if scorer_class(sc).uses_train_bank and stage == "score":
                    knn += c.flops / 1024 / 1e9
                    knn_cpu += c.seconds(16)
                else:
                    cpu += c.seconds(16)
    assert s == pytest.approx({"knn_gpu": knn * 3 / 60, "knn_cpu": knn_cpu * 3 / 60, "cpu": cpu * 3 / 60}, abs=1e-3)
    # CSD alone, one model: 300,000 x 387,000 pairs (10,000 test + 54,565 OOD images, 6 vectors each)
    csd = costs.scorer_cost("csd", dict(costs.scorer_stages(bench, "csd"))["score"], sizes)
    assert csd.flops == pytest.approx(2 * 50_000 * 6 * 64_565 * 6 * 512)
    assert projection.scoring(bench, 16, None)["knn_gpu"] is None


def test_projection_from_measured_rates(cfg):
    """rates_for reads the gpu-check sections (the k-NN search scaled to 512-D); the total is the sum
    of the stages; without a search rate the total is missing, named."""
    rows = {"training": [{"benchmarks": ["cifar10_resnet34"], "objective": o, "configured_batch": b,
                          "images_per_s": 1000.0} for o, b in projection.flop_limit_rates(
                              cfg["benchmarks"]["cifar10_resnet34"]).train],
            "extraction": [{"benchmarks": ["cifar10_resnet34"], "split": s, "images_per_s": 5000.0}
                           for s in ("train", "eval")],
            "scorers": [{"benchmarks": ["cifar10_resnet34"], "scorer": "odin", "images_per_s": 2000.0}]}
    knn = {"ok": True, "pairs_per_s": 2e10, "dim": 256}
    r = projection.rates_for("cifar10_resnet34", rows["training"], rows["extraction"], rows["scorers"], knn)
    assert r.search_pairs_per_s == pytest.approx(1e10) and r.extract_eval == 5000.0
    p = projection.benchmark_projection(cfg["benchmarks"]["cifar10_resnet34"], r, 8)
    assert p["total_minutes"] == pytest.approx(sum(p["stages"].values()), abs=1e-2) and not p["missing"]
    assert p["stages"]["network"] == pytest.approx(3 * 12 * (10_000 + 54_565) / 2000 / 60, abs=1e-2)
    r.search_pairs_per_s = None
    p = projection.benchmark_projection(cfg["benchmarks"]["cifar10_resnet34"], r, 8)
    assert p["total_minutes"] is None and p["missing"] == ["k-NN search rate"]


def test_the_docs_block_is_current(cfg):
    """docs/paper.md's projection block is what `lffood project --write docs/paper.md` writes now."""
    text = PAGE.read_text()
    a, b = text.index(projection.START), text.index(projection.END) + len(projection.END)
    expected = projection.block(projection.paper_projection(cfg), cfg, projection.H100,
                                "lffood project --write docs/paper.md", "config.yaml")
    assert text[a:b] == expected, "rerun: .venv/bin/lffood project --write docs/paper.md"


def test_cli_prints_writes_and_reads_a_gpu_check_file(tmp_path, capsys, cfg):
    page = tmp_path / "page.md"
    page.write_text(f"before\n{projection.START}\nold\n{projection.END}\nafter\n")
    config = str(REPO / "config.yaml")
    assert main(["project", "--config", config, "--bench", "cifar10_resnet34", "--cores", "8",
                 "--write", str(page)]) == 0
    out = capsys.readouterr().out
    assert "FLOP limit on one NVIDIA H100 SXM 80 GB and 8 CPU cores" in out and "cifar10_resnet34" in out
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("\nafter\n") and "old" not in text
    assert "| `cifar10_resnet34` | 3 |" in text and "k-NN on 8 CPU cores instead" in text
    # a page without markers, an unknown benchmark, an unreadable gpu-check file: clear errors, exit 1
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert main(["project", "--config", config, "--bench", "cifar10_resnet34", "--write", str(bare)]) == 1
    assert "no <!-- projection:start -->" in capsys.readouterr().err and bare.read_text() == "no markers\n"
    assert main(["project", "--config", config, "--bench", "nope"]) == 1
    assert "unknown benchmark(s) ['nope']" in capsys.readouterr().err
    assert main(["project", "--config", config, "--gpu-check", str(tmp_path / "missing.json")]) == 1
    assert "cannot read a gpu-check result" in capsys.readouterr().err
    # a gpu-check file's rates: the projection from them
    rates = projection.flop_limit_rates(cfg["benchmarks"]["cifar10_resnet34"])
    gc = {"device": {"name": "NVIDIA H100 80GB HBM3"}, "projection": {"cores": 16},
          "training": [{"benchmarks": ["cifar10_resnet34"], "objective": o, "configured_batch": b,
                        "images_per_s": v / 10} for (o, b), v in rates.train.items()],
          "extraction": [{"benchmarks": ["cifar10_resnet34"], "split": "train", "images_per_s": 1e4},
                         {"benchmarks": ["cifar10_resnet34"], "split": "eval", "images_per_s": 2e4}],
          "scorers": [{"benchmarks": ["cifar10_resnet34"], "scorer": "odin", "images_per_s": 1e4}],
          "knn_search": {"ok": True, "pairs_per_s": 5e9, "dim": 512}}
    f = tmp_path / "gc.json"
    f.write_text(json.dumps(gc))
    assert main(["project", "--config", config, "--bench", "cifar10_resnet34", "--gpu-check", str(f)]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H100 80GB HBM3 and 16 CPU cores" in out and "total" in out
    # measured rates are not written into a page: refused before any work, the page untouched
    before = page.read_text()
    assert main(["project", "--config", config, "--gpu-check", str(f), "--write", str(page)]) == 1
    err = capsys.readouterr()
    assert "--write takes the FLOP-limit projection only" in err.err and not err.out and page.read_text() == before
    # at a tenth of the FLOP-limit rates, training takes ten times the FLOP limit
    limit = projection.flop_limit(cfg["benchmarks"]["cifar10_resnet34"])["stages"]["train"]
    measured = projection.benchmark_projection(
        cfg["benchmarks"]["cifar10_resnet34"],
        projection.rates_for("cifar10_resnet34", gc["training"], gc["extraction"], gc["scorers"], gc["knn_search"]),
        16)["stages"]["train"]
    assert measured == pytest.approx(10 * limit, rel=1e-3)


def test_machine_label_follows_its_cores():
    assert dataclasses.replace(projection.H100, cores=4).label == "one NVIDIA H100 SXM 80 GB and 4 CPU cores"
