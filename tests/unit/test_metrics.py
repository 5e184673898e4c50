"""OOD metrics against hand-computed cases and scikit-learn."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from lffood import metrics


def _sk_auroc(id_s, ood_s):
    y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    return roc_auc_score(y, np.r_[id_s, ood_s])


def _sk_aupr_in(id_s, ood_s):
    y = np.r_[np.ones(len(id_s)), np.zeros(len(ood_s))]
    return average_precision_score(y, np.r_[id_s, ood_s])


def _sk_aupr_out(id_s, ood_s):
    y = np.r_[np.zeros(len(id_s)), np.ones(len(ood_s))]
    return average_precision_score(y, -np.r_[id_s, ood_s])


# ----------------------------------------------------------------------------- AUROC
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    id_s = rng.normal(1.0, 1.0, 137)
    ood_s = rng.normal(0.0, 1.5, 211)
    assert metrics.auroc(id_s, ood_s) == pytest.approx(_sk_auroc(id_s, ood_s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    id_s = rng.integers(0, 5, 90).astype(float)
    ood_s = rng.integers(-1, 3, 70).astype(float)
    assert metrics.auroc(id_s, ood_s) == pytest.approx(_sk_auroc(id_s, ood_s), abs=1e-12)


def test_auroc_hand_cases():
    assert metrics.auroc([3, 4, 5], [0, 1, 2]) == 1.0
    assert metrics.auroc([0, 1, 2], [3, 4, 5]) == 0.0
    assert metrics.auroc([1, 1, 1], [1, 1]) == 0.5
    # 2x2: pairs (id, ood): (2,1)>, (2,3)<, (0,1)<, (0,3)< -> 1/4
    assert metrics.auroc([2, 0], [1, 3]) == pytest.approx(0.25)
    # a tie counts one half: (1,1)=0.5, (1,0)>1, (2,1)>1, (2,0)>1 -> 3.5/4
    assert metrics.auroc([1, 2], [1, 0]) == pytest.approx(3.5 / 4)


def test_auroc_accepts_lists_and_2d():
    assert metrics.auroc(np.array([[3.0], [4.0]]), [1.0, 2.0]) == 1.0


# ----------------------------------------------------------------------------- FPR at 95% TPR
def test_fpr95_hand_case():
    id_s = np.arange(1, 21, dtype=float)  # 1..20; floor(0.95*20)=19 -> threshold = sorted[-19] = 2
    ood = np.array([0.0, 1.0, 1.9, 2.0, 2.5, 10.0, 30.0, -5.0, 1.99, 0.5])
    # accepted: 2.0 (tie at threshold), 2.5, 10, 30 -> 4 / 10
    assert metrics.fpr_at_tpr(id_s, ood, 0.95) == pytest.approx(0.4)
    # definition check
    k = int(np.floor(0.95 * len(id_s)))
    thresh = np.sort(id_s)[-k]
    assert thresh == 2.0
    assert metrics.fpr_at_tpr(id_s, ood) == pytest.approx(np.mean(ood >= thresh))


def test_fpr95_ties_at_threshold_are_accepted():
    id_s = np.arange(1, 21, dtype=float)
    assert metrics.fpr_at_tpr(id_s, np.full(7, 2.0)) == 1.0
    assert metrics.fpr_at_tpr(id_s, np.full(7, np.nextafter(2.0, 0))) == 0.0


def test_fpr95_extremes():
    id_s = np.arange(1, 21, dtype=float)
    assert metrics.fpr_at_tpr(id_s, np.full(5, -100.0)) == 0.0
    assert metrics.fpr_at_tpr(id_s, np.full(5, 100.0)) == 1.0
    # other tpr: floor(0.5*20)=10 -> threshold = sorted[-10] = 11
    assert metrics.fpr_at_tpr(id_s, [10.0, 11.0, 12.0, 5.0], tpr=0.5) == pytest.approx(0.5)


def _fpr_ood_positive(id_s, ood_s, tpr=0.95):
    """OpenOOD convention: OOD positive, scored by -score; threshold keeps tpr of OOD; FPR = ID flagged."""
    neg_ood = -np.asarray(ood_s, float)
    neg_id = -np.asarray(id_s, float)
    k = int(np.floor(tpr * len(neg_ood)))
    thresh = np.sort(neg_ood)[-k]
    return float(np.mean(neg_id >= thresh))


def test_fpr95_is_id_positive_not_ood_positive():
    id_s = np.arange(1, 21, dtype=float)           # 1..20
    ood_s = np.r_[np.arange(-18, 0, dtype=float), 5.0, 15.0]  # 18 clear OOD + two hard ones
    id_pos = metrics.fpr_at_tpr(id_s, ood_s)
    # ID positive: threshold 2, OOD accepted: 5 and 15 -> 2/20
    assert id_pos == pytest.approx(0.1)
    ood_pos = _fpr_ood_positive(id_s, ood_s)
    # OOD positive: -ood sorted, k=19 -> threshold = -5; ID with -id >= -5 -> id <= 5 -> 5/20
    assert ood_pos == pytest.approx(0.25)
    assert id_pos != pytest.approx(ood_pos)


def test_fpr_needs_enough_id_scores():
    with pytest.raises(ValueError):
        metrics.fpr_at_tpr([1.0], [0.0], tpr=0.95)


# ----------------------------------------------------------------------------- AUPR
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aupr_matches_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    id_s = rng.normal(0.8, 1.0, 120)
    ood_s = rng.normal(0.0, 1.0, 80)
    assert metrics.aupr_in(id_s, ood_s) == pytest.approx(_sk_aupr_in(id_s, ood_s), abs=1e-12)
    assert metrics.aupr_out(id_s, ood_s) == pytest.approx(_sk_aupr_out(id_s, ood_s), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_aupr_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    id_s = rng.integers(0, 4, 60).astype(float)
    ood_s = rng.integers(-1, 2, 45).astype(float)
    assert metrics.aupr_in(id_s, ood_s) == pytest.approx(_sk_aupr_in(id_s, ood_s), abs=1e-12)
    assert metrics.aupr_out(id_s, ood_s) == pytest.approx(_sk_aupr_out(id_s, ood_s), abs=1e-12)


def test_aupr_hand_cases():
    assert metrics.aupr_in([3, 4], [1, 2]) == 1.0
    assert metrics.aupr_out([3, 4], [1, 2]) == 1.0
    # ranking (desc): id 3 (P=1, R=1/2), ood 2, id 1 (P=2/3, R=1) -> AP = .5*1 + .5*2/3
    assert metrics.aupr_in([3, 1], [2]) == pytest.approx(0.5 + 1 / 3)
    # all tied: one threshold, precision = n_pos / n
    assert metrics.aupr_in([1, 1, 1], [1]) == pytest.approx(0.75)
    assert metrics.aupr_out([1, 1, 1], [1]) == pytest.approx(0.25)


def test_ood_metrics_keys():
    out = metrics.ood_metrics(np.arange(1, 21.0), np.arange(0, 10.0))
    assert set(out) == set(metrics.METRICS)
    assert all(0.0 <= v <= 1.0 for v in out.values())


# ----------------------------------------------------------------------------- accuracy and errors
def test_accuracy():
    assert metrics.accuracy([0, 1, 2, 3], [0, 1, 0, 3]) == pytest.approx(0.75)
    assert metrics.accuracy(np.array([1]), np.array([2])) == 0.0


@pytest.mark.parametrize("preds,labels", [([], []), ([0, 1], [0])])
def test_accuracy_errors(preds, labels):
    with pytest.raises(ValueError):
        metrics.accuracy(preds, labels)


@pytest.mark.parametrize("fn", [metrics.auroc, metrics.fpr_at_tpr, metrics.aupr_in, metrics.aupr_out])
def test_empty_scores_raise(fn):
    with pytest.raises(ValueError):
        fn([], np.arange(20.0))
    with pytest.raises(ValueError):
        fn(np.arange(20.0), [])


@pytest.mark.parametrize("fn", [metrics.auroc, metrics.fpr_at_tpr, metrics.aupr_in, metrics.aupr_out])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_scores_raise(fn, bad):
    good = np.arange(20.0)
    with pytest.raises(ValueError):
        fn(np.r_[good, bad], good)
    with pytest.raises(ValueError):
        fn(good, np.r_[good, bad])
