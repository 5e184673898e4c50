"""The scorer registry and the logit-based scorers."""

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from lffood.metrics import auroc
from lffood.scorers import FeatureSet, Head, build_scorer, registered_scorers


def _random_set(seed=0, n=13, c=6, k=4, head=None):
    rng = np.random.default_rng(seed)
    if head is None:
        head = Head(rng.normal(size=(k, c)).astype(np.float32), rng.normal(size=k).astype(np.float32))
    feats = rng.uniform(0, 3, size=(n, c)).astype(np.float32)
    return FeatureSet(head(feats).astype(np.float32), feats), head


def test_registry_has_paper_scorers():
    reg = registered_scorers()
    assert {"msp", "energy", "react"} <= set(reg)
    # a copy: mutating it does not change the registry
    reg.pop("msp")
    assert "msp" in registered_scorers()


def test_build_scorer_unknown_name():
    with pytest.raises(KeyError, match="nope"):
        build_scorer("nope")


def test_build_scorer_unknown_param():
    with pytest.raises(ValueError, match="percentil"):
        build_scorer("react", {"percentil": 90})
    with pytest.raises(ValueError):
        build_scorer("msp", {"threshold": 1.0})


def test_build_scorer_fills_defaults():
    sc = build_scorer("react", {"percentile": 95})
    assert sc.params == {"percentile": 95, "threshold": None, "temperature": 1.0}
    assert build_scorer("energy").params == {"temperature": 1.0}
    assert build_scorer("react").needs_fit and not build_scorer("msp").needs_fit


def test_msp_is_max_softmax():
    data, head = _random_set(1)
    sc = build_scorer("msp").fit(None, head)
    np.testing.assert_allclose(sc.score(data), softmax(data.logits.astype(np.float64), axis=1).max(1), rtol=1e-12)


def test_msp_hand_and_stable():
    sc = build_scorer("msp")
    out = sc.score(FeatureSet(np.array([[0.0, np.log(3.0)], [1000.0, 1000.0], [1000.0, 0.0]]), None))
    np.testing.assert_allclose(out, [0.75, 0.5, 1.0])
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_energy_is_t_logsumexp(temperature):
    data, head = _random_set(2)
    sc = build_scorer("energy", {"temperature": temperature}).fit(None, head)
    z = data.logits.astype(np.float64)
    np.testing.assert_allclose(sc.score(data), temperature * logsumexp(z / temperature, axis=1), rtol=1e-12)


def test_energy_hand_and_stable_for_large_logits():
    sc = build_scorer("energy")
    out = sc.score(FeatureSet(np.array([[0.0, 0.0], [1000.0, 1000.0], [1000.0, -1000.0]]), None))
    np.testing.assert_allclose(out, [np.log(2), 1000 + np.log(2), 1000.0])
    assert np.all(np.isfinite(out))
    sc2 = build_scorer("energy", {"temperature": 2.0})
    # 2 * logsumexp([0, 0] / 2) = 2 ln 2
    assert sc2.score(FeatureSet(np.zeros((1, 2)), None))[0] == pytest.approx(2 * np.log(2))


def test_react_threshold_is_percentile_of_all_train_entries():
    train, head = _random_set(3, n=50)
    sc = build_scorer("react").fit(train, head)
    assert sc.threshold == pytest.approx(np.percentile(train.features.astype(np.float64), 90))
    sc95 = build_scorer("react", {"percentile": 95}).fit(train, head)
    assert sc95.threshold == pytest.approx(np.percentile(train.features.astype(np.float64), 95))
    assert sc95.threshold > sc.threshold


def test_react_score_is_energy_of_clipped_features():
    train, head = _random_set(4, n=40)
    test, _ = _random_set(5, n=9, head=head)
    sc = build_scorer("react").fit(train, head)
    c = np.percentile(train.features.astype(np.float64), 90)
    clipped = np.minimum(test.features.astype(np.float64), c)
    logits = clipped @ head.weight.astype(np.float64).T + head.bias.astype(np.float64)
    np.testing.assert_allclose(sc.score(test), logsumexp(logits, axis=1), rtol=1e-10)
    # clipping is active on this data: the score differs from plain energy
    assert not np.allclose(sc.score(test), logsumexp(test.logits.astype(np.float64), axis=1))


def test_react_fixed_threshold_overrides_percentile():
    train, head = _random_set(6, n=30)
    test, _ = _random_set(7, n=5, head=head)
    sc = build_scorer("react", {"threshold": 1.0}).fit(train, head)
    assert sc.threshold == 1.0
    logits = np.minimum(test.features.astype(np.float64), 1.0) @ head.weight.astype(np.float64).T + head.bias
    np.testing.assert_allclose(sc.score(test), logsumexp(logits, axis=1), rtol=1e-10)


def test_react_with_huge_threshold_equals_energy():
    train, head = _random_set(8)
    test, _ = _random_set(9, head=head)
    sc = build_scorer("react", {"threshold": 1e9}).fit(train, head)
    np.testing.assert_allclose(sc.score(test), build_scorer("energy").score(test), rtol=1e-5)


def _separable(seed=0, n=200, k=4):
    """Identity head (C = K); ID features one-hot * 6 + noise, OOD features small noise."""
    rng = np.random.default_rng(seed)
    head = Head(np.eye(k, dtype=np.float32), np.zeros(k, dtype=np.float32))

    def id_set(m):
        f = rng.uniform(0, 0.5, (m, k)) + 6.0 * np.eye(k)[rng.integers(0, k, m)]
        return FeatureSet(head(f), f, None)

    train, test = id_set(n), id_set(n)
    f_ood = rng.uniform(0, 0.5, (n, k))
    return train, test, FeatureSet(head(f_ood), f_ood, None), head


@pytest.mark.parametrize("name", ["msp", "energy", "react"])
def test_direction_id_scores_higher(name):
    train, test, ood, head = _separable()
    sc = build_scorer(name).fit(train, head)
    s_id, s_ood = sc.score(test), sc.score(ood)
    assert s_id.shape == (len(test.logits),)
    assert s_id.mean() > s_ood.mean()
    assert auroc(s_id, s_ood) > 0.9
