"""Scoring jobs' resources from the scorers' cost models (lffood.costs): the estimate against timed
small cases of the real scorers, the embedded benchmark's jobs stay small, the limit check."""
import time
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lffood import costs
from lffood.config import load_configfiles, validate_config
from lffood.scorers import build_scorer, fit_params, registered_scorers, resolved_params
from lffood.scorers.base import FeatureSet

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cfg():
    return validate_config(load_configfiles([ROOT / "config.yaml"]),
                           ROOT / "src" / "lffood" / "resources" / "config.schema.yaml", source="config.yaml")


def _fs(n, c, rng, multiscale=False):
    feats = rng.standard_normal((n, c), dtype=np.float32)
    extras = {"multiscale": rng.standard_normal((n, 6, c)).astype(np.float16)} if multiscale else {}
    return FeatureSet(logits=np.zeros((n, 10), np.float32), features=feats, extras=extras)


def _timed(name, params, n_train, n_query, c, multiscale):
    rng = np.random.default_rng(0)
    sc = build_scorer(name, params).fit(_fs(n_train, c, rng, multiscale), head=None)
    query = _fs(n_query, c, rng, multiscale)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            # CPU time of this process: one thread, so it is the work done, whatever else the machine runs
            start = time.process_time()
            sc.score(query)
            return time.process_time() - start
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name,params,n_train,n_query,c,multiscale", [
    ("knn", {"k": 50}, 20_000, 2_000, 256, False),
    ("knn", {"k": 500}, 10_000, 2_000, 128, False),
    ("csd", {"k": 10}, 2_000, 400, 256, True),
])
def test_estimate_within_3x_of_the_measured_scorer(name, params, n_train, n_query, c, multiscale):
    sizes = costs.Sizes(train=n_train, test=n_query, ood=(), dim=c, classes=10)
    estimate = costs.scorer_cost(name, resolved_params(name, params), sizes).seconds(1)
    measured = min(_timed(name, params, n_train, n_query, c, multiscale) for _ in range(2))
    assert measured / 3 <= estimate <= 3 * measured, (name, estimate, measured)


def test_embedded_jobs_stay_small_and_on_one_thread(cfg):
    b = cfg["benchmarks"]["embedded"]
    for name, cls in registered_scorers().items():
        if cls.score_on != "features":
            continue
        p = b["scorers"]["params"].get(name)
        for stage, params in (("fit", fit_params(name, p)), ("score", resolved_params(name, p))):
            r = costs.job_resources(b, name, params, stage)
            assert r["threads"] == 1 and r["estimate_s"] < 60, (name, stage, r)
            # the floors: what the embedded jobs asked for before the cost models
            assert (r["runtime"], r["mem_mb"]) == (b["compute"]["score_runtime"], b["compute"]["score_mem_mb"])


def test_paper_sizes_come_from_the_config(cfg):
    s = costs.benchmark_sizes(cfg["benchmarks"]["cifar10_resnet34"])
    assert (s.train, s.test, s.dim, s.classes) == (50_000, 10_000, 512, 10)
    assert s.ood == (10_000, 10_000, 10_000, 8_925, 5_640, 10_000)  # SVHN and Places365 capped (ood_max_images)
    assert costs.benchmark_sizes(cfg["benchmarks"]["imagenet100_resnet50"]).dim == 2048
    assert costs.benchmark_sizes(cfg["benchmarks"]["cifar10_wrn28_10"]).dim == 640
    assert costs.benchmark_sizes(cfg["benchmarks"]["embedded"]).dim == cfg["benchmarks"]["embedded"]["model"]["widths"][-1]


def test_expensive_scorers_get_threads_and_time_cheap_ones_do_not(cfg):
    b = cfg["benchmarks"]["cifar10_resnet34"]
    csd = costs.job_resources(b, "csd", resolved_params("csd", b["scorers"]["params"].get("csd")))
    msp = costs.job_resources(b, "msp", resolved_params("msp"))
    assert 1 < csd["threads"] <= b["compute"]["score_max_threads"]
    assert csd["runtime"] > b["compute"]["score_runtime"] and csd["estimate_s"] > 20 * 60
    assert msp["threads"] == 1 and msp["runtime"] == b["compute"]["score_runtime"]
    capped = costs.job_resources({**b, "compute": {**b["compute"], "score_max_threads": 2}}, "csd",
                                 resolved_params("csd", b["scorers"]["params"].get("csd")))
    assert capped["threads"] == 2 and capped["runtime"] > csd["runtime"]


def test_scorer_stages_are_the_jobs_the_rules_run(cfg):
    """A fitted scorer on cached features: fit and score; a network scorer: none here; fit parameters
    are the fit's own keys."""
    b = cfg["benchmarks"]["cifar10_resnet34"]
    assert [s for s, _ in costs.scorer_stages(b, "mahalanobis")] == ["fit", "score"]
    assert [s for s, _ in costs.scorer_stages(b, "csd")] == ["score"]
    assert costs.scorer_stages(b, "odin") == []
    fit = dict(costs.scorer_stages(b, "mahalanobis"))["fit"]
    assert fit == fit_params("mahalanobis", b["scorers"]["params"].get("mahalanobis"))
    assert dict(costs.scorer_stages(b, "npos_knn"))["score"]["k"] == 300


def test_limit_check_names_benchmark_scorer_estimate_and_key(cfg):
    benchmarks = dict(cfg["benchmarks"])
    b = benchmarks["cifar10_resnet34"]
    assert costs.limit_problems(benchmarks, ["cifar10_resnet34", "embedded"]) == []
    benchmarks["cifar10_resnet34"] = {**b, "compute": {**b["compute"], "max_runtime_min": 15, "max_mem_mb": 1500}}
    problems = costs.limit_problems(benchmarks, ["cifar10_resnet34"])
    runtime = [p for p in problems if "max_runtime_min" in p]
    assert runtime and all("'cifar10_resnet34'" in p for p in problems)
    assert any("scorer 'csd'" in p and "benchmarks.cifar10_resnet34.compute.max_runtime_min = 15" in p
               for p in runtime)
    assert any("benchmarks.cifar10_resnet34.compute.max_mem_mb = 1500" in p for p in problems)
    # a limit above every estimate: nothing, and the floors are clipped to it
    benchmarks["cifar10_resnet34"] = {**b, "compute": {**b["compute"], "max_runtime_min": 600}}
    assert costs.limit_problems(benchmarks, ["cifar10_resnet34"]) == []
