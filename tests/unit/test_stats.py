"""lffood.stats: the vectorised bootstrap against lffood.metrics, the combination over seeds on
hand-computed numbers, the verdict's edges, the coverage of the paired interval, degenerate cases."""

import math

import numpy as np
import pytest

from lffood import metrics, stats
from lffood.errors import DataError


def _tied_scores(rng, n1, n0):
    """Few distinct values: ties within and between ID and OOD."""
    return rng.integers(0, 6, n1).astype(float), rng.integers(0, 6, n0).astype(float) - 1.0


# ----------------------------------------------------------------------------- weighted metrics
def test_unit_weights_give_exactly_lffood_metrics_ties_included():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n1, n0 = int(rng.integers(20, 60)), int(rng.integers(1, 60))
        x, y = _tied_scores(rng, n1, n0)
        if trial % 3 == 1:  # no ties
            x, y = rng.normal(1, 1, n1), rng.normal(0, 1, n0)
        got = stats.weighted_metrics(x, y, np.ones(n1), np.ones(n0))
        ref = metrics.ood_metrics(x, y)
        for m in metrics.METRICS:
            assert got[m][0] == ref[m], (trial, m)  # the same bits, not just close


def test_count_weights_are_the_metrics_of_the_resampled_arrays():
    rng = np.random.default_rng(1)
    for _ in range(40):
        x, y = _tied_scores(rng, 40, 30)
        ii, jj = stats.resample_indices(40, "test", 0, 6, seed=3), stats.resample_indices(30, "far", 0, 6, seed=3)
        got = stats.weighted_metrics(x, y, stats.counts(ii), stats.counts(jj))
        for b in range(6):
            ref = metrics.ood_metrics(x[ii[b]], y[jj[b]])
            assert got["auroc"][b] == ref["auroc"] and got["fpr95"][b] == ref["fpr95"]
            # the APs add zero terms for values a resample lacks: equal up to the order of a float sum
            for m in ("aupr_in", "aupr_out"):
                assert got[m][b] == pytest.approx(ref[m], rel=1e-12, abs=1e-15)
        x, y = rng.normal(1, 1, 40), rng.normal(0, 1, 30)
        got = stats.weighted_metrics(x, y, stats.counts(ii), stats.counts(jj))
        assert got["auroc"][2] == metrics.auroc(x[ii[2]], y[jj[2]])


def test_hand_computed_weighted_metrics():
    # ID 3, 2, 1 and OOD 2, 0; weights ID (2, 0, 1) and OOD (1, 1): the arrays [3, 3, 1] and [2, 0]
    got = stats.weighted_metrics([3, 2, 1], [2, 0], [2, 0, 1], [1, 1])
    # pairs ID > OOD: 3>2, 3>0 twice each, 1>0: 5 of 6
    assert got["auroc"][0] == pytest.approx(5 / 6)
    # k = floor(0.95 * 3) = 2: threshold = 2nd largest ID = 3; OOD >= 3: none
    assert got["fpr95"][0] == 0.0
    assert got["aupr_in"][0] == pytest.approx(metrics.aupr_in([3, 3, 1], [2, 0]))


def test_weights_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        stats.weighted_metrics([1, 2, 3], [0, 1], np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        stats.PairedScores([1, np.nan], [0])


# ----------------------------------------------------------------------------- resampling
def test_resamples_are_keyed_by_seed_split_and_index_only():
    a = stats.resample_indices(50, "test", 0, 60, seed=7)
    assert a.shape == (60, 50) and a.min() >= 0 and a.max() < 50
    # any window of resamples is the same rows: chunking and B do not change resample b
    np.testing.assert_array_equal(stats.resample_indices(50, "test", 13, 41, seed=7), a[13:41])
    np.testing.assert_array_equal(stats.resample_indices(50, "test", 0, 10, seed=7), a[:10])
    assert not np.array_equal(stats.resample_indices(50, "far", 0, 60, seed=7), a)
    assert not np.array_equal(stats.resample_indices(50, "test", 0, 60, seed=8), a)
    c = stats.counts(a)
    assert c.shape == (60, 50) and np.all(c.sum(axis=1) == 50)
    np.testing.assert_array_equal(c[5], np.bincount(a[5], minlength=50))


def test_bootstrap_shares_resamples_across_keys_and_chunks():
    rng = np.random.default_rng(2)
    s = {"test": rng.normal(1, 1, 80), "o1": rng.normal(0, 1, 30), "o2": rng.normal(0, 1, 50)}
    other = {k: v + rng.normal(0, 0.1, len(v)) for k, v in s.items()}
    full = stats.bootstrap({"a": s, "b": other, "a2": dict(s)}, ["o1", "o2"], n_boot=40, seed=5)
    small = stats.bootstrap({"a": s}, ["o1", "o2"], n_boot=40, seed=5, max_elements=3 * 130)  # chunks of 3
    for o in ("o1", "o2"):
        for m in metrics.METRICS:
            np.testing.assert_array_equal(full["a"][o][m], full["a2"][o][m])
            np.testing.assert_array_equal(full["a"][o][m], small["a"][o][m])
    # resample b of o1 uses the ID images drawn for every OOD set
    ii = stats.resample_indices(80, "test", 0, 40, seed=5)
    jj = stats.resample_indices(30, "o1", 0, 40, seed=5)
    assert full["b"]["o1"]["auroc"][17] == metrics.auroc(other["test"][ii[17]], other["o1"][jj[17]])
    with pytest.raises(DataError, match="same test images"):
        stats.bootstrap({"a": s, "b": {**s, "o1": s["o1"][:-1]}}, ["o1"], n_boot=10)


def test_bootstrap_mean_uses_the_same_id_resamples():
    v = (np.arange(37) % 3 == 0).astype(float)
    got = stats.bootstrap_mean(v, "test", n_boot=30, seed=4, max_elements=100)
    ii = stats.resample_indices(37, "test", 0, 30, seed=4)
    np.testing.assert_allclose(got, v[ii].mean(axis=1), rtol=1e-14)


def test_standard_error_of_auroc_is_close_to_the_normal_theory():
    """Hanley-McNeil's standard error of AUROC for two normal classes: the bootstrap is near it."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(1, 1, 400), rng.normal(0, 1, 300)
    se = stats.standard_error(stats.bootstrap({"m": {"test": x, "o": y}}, ["o"], n_boot=400)["m"]["o"]["auroc"])
    a = metrics.auroc(x, y)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    hm = math.sqrt((a * (1 - a) + (400 - 1) * (q1 - a * a) + (300 - 1) * (q2 - a * a)) / (400 * 300))
    assert se == pytest.approx(hm, rel=0.15)


# ----------------------------------------------------------------------------- combining seeds
def test_t_quantiles_by_hand():
    assert stats.t_quantile(0.95, 1) == pytest.approx(12.7062047, rel=1e-7)
    assert stats.t_quantile(0.95, 2) == pytest.approx(4.3026527, rel=1e-7)
    assert stats.t_quantile(0.95, 4) == pytest.approx(2.7764451, rel=1e-7)
    assert stats.t_quantile(0.95, math.inf) == pytest.approx(1.9599640, rel=1e-7)
    assert stats.t_quantile(0.90, 1) == pytest.approx(6.3137515, rel=1e-7)
    with pytest.raises(ValueError, match="level"):
        stats.t_quantile(1.0, 3)


def test_welch_satterthwaite_df_by_hand():
    assert stats.welch_df(0.25, 0.25, 2) == pytest.approx(4.0)  # 0.5^2 / (0.25^2 / 1)
    assert stats.welch_df(0.25, 0.0, 5) == pytest.approx(4.0)  # no test-set part: n - 1
    assert stats.welch_df(1 / 3, 1 / 3, 3) == pytest.approx(8.0)
    assert stats.welch_df(0.25, 0.25, 1) == math.inf and stats.welch_df(0.0, 0.25, 3) == math.inf


def test_combination_on_tiny_numbers():
    iv = stats.combine([1.0, 3.0], 0.0)  # s^2 = 2, s^2/n = 1, V = 1, df = 1
    assert (iv.estimate, iv.df, iv.se_seeds, iv.se_test) == (2.0, pytest.approx(1.0), 1.0, 0.0)
    assert (iv.low, iv.high) == (pytest.approx(2 - 12.7062047), pytest.approx(2 + 12.7062047))
    iv = stats.combine([1.0, 2.0, 3.0], 1 / 3)  # s^2/n = 1/3, V = 2/3, df = 8, t = 2.3060041
    assert iv.df == pytest.approx(8.0) and iv.half_width == pytest.approx(2.3060041 * math.sqrt(2 / 3), rel=1e-7)
    assert iv.seeds_known and iv.se == pytest.approx(math.sqrt(2 / 3))


def test_cell_bounds_the_test_variance_by_the_mean_squared_error():
    iv = stats.cell([80.0, 82.0], [0.3, 0.4])  # t^2 = (0.09 + 0.16) / 2 = 0.125; s^2/n = 1
    assert iv.se_test == pytest.approx(math.sqrt(0.125)) and iv.se_seeds == pytest.approx(1.0)
    assert iv.df == pytest.approx(1.125 ** 2 / 1.0)
    with pytest.raises(ValueError, match="standard errors"):
        stats.cell([1.0, 2.0], [0.1])


def test_paired_takes_the_test_variance_from_joint_resamples():
    # per-resample seed means 2, 3, 4: variance 1; deltas 1, 3: s^2/n = 1; V = 2, df = 4
    iv = stats.paired([1.0, 3.0], [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    assert iv.se_test == pytest.approx(1.0) and iv.df == pytest.approx(4.0)
    assert iv.half_width == pytest.approx(2.7764451 * math.sqrt(2), rel=1e-7)
    with pytest.raises(ValueError, match="do not fit"):
        stats.paired([1.0, 3.0, 4.0], [[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])


def test_average_se_is_the_mean_of_the_sets():
    assert stats.average_se([0.2, 0.4, 0.6]) == pytest.approx(0.4)


# ----------------------------------------------------------------------------- the verdict
def test_verdict_edges():
    assert stats.verdict((0.0, 1.0)) == "tie"  # touching 0 is not excluding it
    assert stats.verdict((1e-9, 1.0)) == "win"
    assert stats.verdict((-1.0, 0.0)) == "tie"
    assert stats.verdict((-1.0, -1e-9)) == "loss"
    # lower is better (FPR95): an interval below 0 is the method's win
    assert stats.verdict((-2.0, -1.0), higher_is_better=False) == "win"
    assert stats.verdict((1.0, 2.0), higher_is_better=False) == "loss"
    assert stats.verdict((-1.0, 2.0), higher_is_better=False) == "tie"
    assert stats.verdict((math.nan, 1.0)) == "–"
    iv = stats.combine([-3.0, -2.0], 0.0)  # two seeds, df 1: a clear mean is still a tie
    assert stats.metric_verdict(iv, "auroc") == "tie" and stats.metric_verdict(iv, "fpr95") == "tie"
    iv = stats.combine([-3.0, -2.9, -3.1], 0.01)
    assert stats.metric_verdict(iv, "auroc") == "loss" and stats.metric_verdict(iv, "fpr95") == "win"


# ----------------------------------------------------------------------------- degenerate cases
def test_all_scores_equal():
    s = {"test": np.ones(30), "o": np.ones(20)}
    boot = stats.bootstrap({"a": s, "b": s}, ["o"], n_boot=50)
    assert np.all(boot["a"]["o"]["auroc"] == 0.5) and np.all(boot["a"]["o"]["fpr95"] == 1.0)
    assert stats.standard_error(boot["a"]["o"]["auroc"]) == 0.0
    diff = boot["a"]["o"]["auroc"] - boot["b"]["o"]["auroc"]
    iv = stats.paired([0.0, 0.0], np.stack([diff, diff]))
    assert (iv.low, iv.high, iv.df) == (0.0, 0.0, math.inf) and stats.verdict(iv) == "tie"


def test_one_seed_covers_the_test_set_only():
    iv = stats.paired([2.0], [[1.0, 2.0, 3.0]])  # test variance 1
    assert not iv.seeds_known and iv.df == math.inf and iv.se_seeds == 0.0
    assert (iv.low, iv.high) == (pytest.approx(2 - 1.959964), pytest.approx(2 + 1.959964))
    with pytest.raises(ValueError, match="no seeds"):
        stats.combine([], 0.0)


# ----------------------------------------------------------------------------- coverage
def test_paired_interval_covers_a_known_difference_about_95_percent():
    """Two models, three seeds, scored on shared synthetic test images: ID score = mu_m + a_seed +
    u_image + noise, OOD = v_image + noise. The estimand, the difference of the population AUROCs
    averaged over training seeds, is Phi(mu_m / sqrt(c^2 + tau^2)) (c^2 = 2 (1 + sigma^2)), known
    exactly. The intervals (seeds and test set both contributing) cover it about 95% of the time."""
    from scipy.stats import norm

    rng = np.random.default_rng(11)
    n_sims, n_seeds, n, tau, sig, mu = 160, 3, 100, 0.15, 0.5, (1.0, 1.3)
    c2 = 2 * (1 + sig ** 2)
    truth = norm.cdf(mu[1] / math.sqrt(c2 + tau ** 2)) - norm.cdf(mu[0] / math.sqrt(c2 + tau ** 2))
    hits = 0
    for k in range(n_sims):
        u, v = rng.normal(size=n), rng.normal(size=n)
        scores = {(m, s): {"test": mu[m] + rng.normal(0, tau) + u + rng.normal(0, sig, n),
                           "o": v + rng.normal(0, sig, n)} for m in (0, 1) for s in range(n_seeds)}
        boot = stats.bootstrap(scores, ["o"], n_boot=100, seed=k, which=("auroc",))
        d = [metrics.auroc(scores[(1, s)]["test"], scores[(1, s)]["o"])
             - metrics.auroc(scores[(0, s)]["test"], scores[(0, s)]["o"]) for s in range(n_seeds)]
        r = np.stack([boot[(1, s)]["o"]["auroc"] - boot[(0, s)]["o"]["auroc"] for s in range(n_seeds)])
        iv = stats.paired(d, r)
        hits += iv.low <= truth <= iv.high
    assert 0.89 <= hits / n_sims <= 0.99
