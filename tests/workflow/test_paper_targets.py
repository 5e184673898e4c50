"""The paper's table targets and the `run=paper` switch: with no data on this machine, a dry run of
each must print its complete job graph (downloads -> preprocessing -> CE -> every variant ->
extraction -> every scorer that applies -> metrics -> table)."""

import pytest

from conftest import REPO, job_counts, snakemake
from lffood.config import load_config
from lffood.variants import variant_names, variant_scorers

CFG = load_config(REPO / "config.yaml", REPO / "src" / "lffood" / "resources" / "config.schema.yaml")
SEEDS = 3  # the paper benchmarks' seeds: the schema's default [0, 1, 2]
ARCHIVES = {"cifar10": {"cifar10"}, "cifar100": {"cifar100"}, "imagenet100": set()}
OOD_ARCHIVE = {"svhn": "svhn", "lsun_crop": "lsun_crop", "lsun_resize": "lsun_resize", "isun": "isun",
               "textures": "dtd", "places365": "places365", "inaturalist": "inaturalist", "sun": "sun",
               "places": "places"}


def expected(benches):
    archives, n = set(), {"models": 0, "scores": 0, "prepare_ood": 0}
    for b in benches:
        bench = CFG["benchmarks"][b]
        ds = bench["dataset"]
        archives |= ARCHIVES[ds["source"]] | {OOD_ARCHIVE[s] for s in ds["ood_sets"]}
        n["prepare_ood"] += len(ds["ood_sets"])
        assert len(bench["seeds"]) == SEEDS
        n["models"] += SEEDS * len(variant_names(bench))
        n["scores"] += SEEDS * sum(len(variant_scorers(bench, v)) for v in variant_names(bench))
    n["download"] = len(archives)
    return n


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "table4"])
def test_paper_table_graph_without_data(tmp_path, table):
    proc = snakemake(tmp_path, "-n", "--cores", "8", f"results/tables/{table}.csv", config=REPO / "config.yaml")
    counts = job_counts(proc.stdout)
    benches = CFG["tables"][table]
    exp = expected(benches)
    assert counts["paper_table"] == 1
    assert counts["download"] == exp["download"]
    assert counts["prepare_ood"] == exp["prepare_ood"]
    assert counts["train"] == counts["extract"] == counts["metrics"] == exp["models"]
    # ce, ce_control, lff, ssod, mode, logitnorm, and the training baselines vos, npos, cider, ssd_plus, csi_pre, csi
    assert exp["models"] == 12 * SEEDS * len(benches)
    score_rules = ("score", "score_search", "score_network")  # every rule that writes a score file
    assert sum(counts.get(rule, 0) for rule in score_rules) == exp["scores"]
    n_cifar = sum(CFG["benchmarks"][b]["dataset"]["source"] != "imagenet100" for b in benches)
    assert counts.get("prepare_cifar", 0) == n_cifar
    assert counts.get("prepare_imagenet100", 0) == 2 * (len(benches) - n_cifar)  # train and test
    assert "prepare_embedded" not in counts


def test_tables_name_the_papers_benchmarks():
    assert CFG["tables"]["table1"] == ["cifar10_resnet34", "cifar100_resnet34"]
    assert CFG["tables"]["table2"] == ["cifar10_wrn28_10", "cifar100_wrn28_10"]
    assert CFG["tables"]["table3"] == ["imagenet100_resnet50"]
    b = CFG["benchmarks"]
    assert {b[n]["model"]["arch"] for n in CFG["tables"]["table1"]} == {"resnet34"}
    assert {b[n]["model"]["arch"] for n in CFG["tables"]["table2"]} == {"wrn28_10"}
    assert b["imagenet100_resnet50"]["model"]["arch"] == "resnet50"


@pytest.mark.parametrize("name, delta, mu", [("cifar10_resnet34", 0.1, 1.0), ("cifar100_resnet34", 0.01, 2.0),
                                             ("cifar10_wrn28_10", 0.1, 1.0), ("cifar100_wrn28_10", 0.01, 2.0),
                                             ("imagenet100_resnet50", 0.01, 3.0)])
def test_paper_hyperparameters(name, delta, mu):
    """Section V.A of the paper, per benchmark."""
    b = CFG["benchmarks"][name]
    assert b["lff"] == {"delta": delta, "mu": mu, "lambda": 1.0}
    ft = b["finetune"]
    assert (ft["optimizer"], ft["momentum"], ft["weight_decay"]) == ("sgd", 0.9, 1e-4)
    assert ft["augment"]["color_jitter"] == 0.0
    if name.startswith("imagenet"):
        assert (ft["epochs"], ft["lr"], ft["schedule"]["milestones"]) == (10, 5e-5, [5])
        assert ft["augment"]["random_resized_crop"]["size"] == 224
        assert b["extraction"]["center_crop"] == 224 and b["dataset"]["ood_crop"] == 224
    else:
        assert (ft["epochs"], ft["lr"], ft["schedule"]["milestones"]) == (30, 0.1, [15])
        assert b["dataset"]["ood_resize"] == b["dataset"]["ood_crop"] == 32
    assert ft["schedule"]["gamma"] == 0.1


def test_fidelity_choices_of_the_paper_benchmarks():
    """ImageNet-100 is NPOS's list (II); ReAct by its own percentile rule on ImageNet-100 (not the
    fixed 1.0 of ImageNet-1k's ResNet-50); FeatureNorm on WRN-28-10's penultimate block (index 10)."""
    b = CFG["benchmarks"]
    assert b["imagenet100_resnet50"]["dataset"]["class_list"] == "II"
    react = b["imagenet100_resnet50"]["scorers"]["params"]["react"]
    assert react == {"percentile": 90, "threshold": None}
    assert b["imagenet100_resnet50"]["scorers"]["params"]["dice_react"]["react_threshold"] is None
    for name in ("cifar10_wrn28_10", "cifar100_wrn28_10"):
        assert b[name]["scorers"]["params"]["featurenorm"]["block"] == 10


def test_run_paper_switch_plans_every_paper_benchmark(tmp_path):
    counts = job_counts(snakemake(tmp_path, "-n", "--cores", "8", "all", "--config", "run=paper",
                                  config=REPO / "config.yaml").stdout)
    paper = CFG["suites"]["paper"]
    assert len(paper) == 5
    assert counts["table"] == counts["figures"] == 5
    # twelve variants per benchmark, and the sweep points of the benchmarks whose Fig. 6 is part of `all`
    # (figures.sensitivity.in_all): the paper's grids on CIFAR-100 / ResNet-34 and ImageNet-100
    swept = [b for b in paper if CFG["benchmarks"][b]["figures"]["sensitivity"]["in_all"]]
    points = {b: len(variant_names(CFG["benchmarks"][b], with_sweeps=True))
              - len(variant_names(CFG["benchmarks"][b])) for b in swept}
    assert swept == ["cifar100_resnet34", "imagenet100_resnet50"] and all(points.values())
    assert counts["train"] == 5 * 12 * SEEDS + sum(points.values()) * SEEDS
    assert counts["sensitivity"] == len(swept)
    assert "prepare_embedded" not in counts
    assert counts["paper_table"] == 4  # Tables I-IV: every benchmark they draw on is in `run`


def test_user_ce_checkpoint_replaces_pretraining_input(tmp_path):
    ck = tmp_path / "ce_resnet34.pth"
    ck.write_bytes(b"placeholder")  # a dry run only checks that the file exists
    override = f'benchmarks={{"cifar10_resnet34": {{"variants": {{"ce": {{"checkpoint": "{ck}"}}}}}}}}'
    proc = snakemake(tmp_path, "-n", "--cores", "2", "results/cifar10_resnet34/seed0/models/ce.pt",
                     "--config", override, config=REPO / "config.yaml")
    assert str(ck) in proc.stdout  # listed as an input of the CE model's training job
    missing = snakemake(tmp_path, "-n", "--cores", "2", "results/cifar10_resnet34/seed0/models/ce.pt",
                        "--config", override.replace(str(ck), str(tmp_path / "nope.pth")),
                        config=REPO / "config.yaml", check=False)
    err = missing.stdout + missing.stderr
    assert missing.returncode != 0 and "nope.pth" in err and "variants.ce.checkpoint" in err
