"""OOD metrics, in one place. Scores: higher = more in-distribution. ID is the positive class.

* ``auroc``: area under the ROC curve (ties count one half; identical under either convention).
* ``fpr_at_tpr``: the classic FPR95 of ODIN / Energy / KNN / ViM and of the LFF paper's tables:
  the threshold keeps 95% of ID samples (``sort(id)[-floor(0.95 * N_id)]``) and FPR is the
  fraction of OOD samples scoring at or above it. (OpenOOD's "FPR@95" takes OOD as positive and
  is a different number.)
* ``aupr_in`` / ``aupr_out``: average precision with ID / OOD as the positive class (OOD scored
  by the negated score), defined as scikit-learn's ``average_precision_score``.
All return fractions in [0, 1]; tables print percentages.
"""

from __future__ import annotations

import numpy as np


def _as1d(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("empty score array")
    if not np.all(np.isfinite(a)):
        raise ValueError("scores contain NaN or infinity")
    return a


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank (vectorised)."""
    order = np.argsort(values, kind="mergesort")
    sorted_v = values[order]
    new_group = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    group_id = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(values)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(values))
    ranks[order] = avg[group_id]
    return ranks


def auroc(id_scores, ood_scores) -> float:
    """Mann-Whitney U / (n_id * n_ood): P(score_id > score_ood) + 0.5 P(equal)."""
    s_id, s_ood = _as1d(id_scores), _as1d(ood_scores)
    ranks = _midranks(np.concatenate([s_id, s_ood]))
    n1, n0 = len(s_id), len(s_ood)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def fpr_at_tpr(id_scores, ood_scores, tpr: float = 0.95) -> float:
    """Fraction of OOD accepted at the threshold that accepts ``tpr`` of ID (ID positive)."""
    s_id, s_ood = _as1d(id_scores), _as1d(ood_scores)
    k = int(np.floor(tpr * len(s_id)))
    if k < 1:
        raise ValueError(f"need at least {int(np.ceil(1 / tpr))} ID scores for tpr={tpr}")
    thresh = np.sort(s_id)[-k]
    return float(np.mean(s_ood >= thresh))


def average_precision(pos_scores, neg_scores) -> float:
    """Average precision, positives scored by ``pos_scores`` (higher = more positive).

    AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds, as scikit-learn defines it."""
    pos, neg = _as1d(pos_scores), _as1d(neg_scores)
    scores = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="mergesort")
    scores, y = scores[order], y[order]
    last_of_group = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(y)[last_of_group]
    fp = np.cumsum(1 - y)[last_of_group]
    precision = tp / (tp + fp)
    recall = tp / len(pos)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def aupr_in(id_scores, ood_scores) -> float:
    return average_precision(id_scores, ood_scores)


def aupr_out(id_scores, ood_scores) -> float:
    return average_precision(-_as1d(ood_scores), -_as1d(id_scores))


def accuracy(preds, labels) -> float:
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.shape != labels.shape or preds.size == 0:
        raise ValueError(f"preds {preds.shape} and labels {labels.shape} must be equal-length, non-empty")
    return float(np.mean(preds == labels))


def ood_metrics(id_scores, ood_scores) -> dict[str, float]:
    """All OOD metrics for one (ID, OOD) pair, as fractions."""
    return {"auroc": auroc(id_scores, ood_scores), "fpr95": fpr_at_tpr(id_scores, ood_scores, 0.95),
            "aupr_in": aupr_in(id_scores, ood_scores), "aupr_out": aupr_out(id_scores, ood_scores)}


METRICS = ("auroc", "fpr95", "aupr_in", "aupr_out")
#: True where larger is better (for table annotations)
HIGHER_IS_BETTER = {"auroc": True, "fpr95": False, "aupr_in": True, "aupr_out": True, "id_acc": True}


# ----------------------------------------------------------------------------- completeness of metrics tables
_KEYS = ("benchmark", "variant", "seed", "scorer", "ood_set")


def expected_rows(labels, scorers, ood_sets) -> dict:
    """What one model's metrics file must hold (recorded in its integrity manifest, lffood.integrity):
    the ``labels`` (benchmark, seed, variant) and one row per scorer x OOD set."""
    return {"labels": dict(labels), "scorers": list(scorers), "ood_sets": list(ood_sets)}


def _unique(values) -> list[str]:
    return list(dict.fromkeys(values))


def _describe(key, benches: int) -> str:
    b, v, seed, sc, o = key
    return (f"benchmark {b}, " if benches > 1 else "") + f"seed {seed}, variant {v}, scorer {sc}, OOD set {o}"


def check_complete(tidy, source: str, *, benchmark=None, seeds=None, scorers=None, ood_sets=None, hint: str = "") -> None:
    """Refuse metrics (a DataFrame with columns variant, seed, scorer, ood_set[, benchmark]) that lack
    a row, hold one twice, or hold rows nobody asked for, naming them; a half table must not become
    means over fewer seeds. Expected: per benchmark (``benchmark``: only that one), every ``seeds``
    x variant x its ``scorers`` (a list, or variant -> list) x ``ood_sets``; what is not given is
    taken from the rows themselves (the union over the other keys), so a seed, scorer or OOD set that
    one model has and another lacks is missing there. ``source`` names the file(s), ``hint`` the fix."""
    from collections import Counter
    from collections.abc import Mapping

    from .errors import IntegrityError

    absent = [c for c in _KEYS[1:] if c not in tidy]
    if absent:
        raise IntegrityError(f"{source}: not a metrics table (no column(s) {absent}). {hint}".rstrip())
    n = len(tidy)
    cols = [tidy[c].astype(str).tolist() if c in tidy else ["-"] * n for c in _KEYS]
    counts = Counter(zip(*cols))
    present = list(counts)
    benches = [str(benchmark)] if benchmark is not None else _unique(k[0] for k in present) or ["-"]
    expected: dict = {}  # ordered as configured: the first missing rows named are the first expected
    for b in benches:
        rows = [k for k in present if k[0] == b]
        b_seeds = [str(s) for s in seeds] if seeds is not None else _unique(k[2] for k in rows)
        b_sets = [str(o) for o in ood_sets] if ood_sets is not None else _unique(k[4] for k in rows)
        if isinstance(scorers, Mapping):
            per_variant = {str(v): [str(s) for s in scs] for v, scs in scorers.items()}
        else:
            per_variant = {v: ([str(s) for s in scorers] if scorers is not None
                               else _unique(k[3] for k in rows if k[1] == v)) for v in _unique(k[1] for k in rows)}
        expected.update(dict.fromkeys((b, v, s, sc, o) for v, scs in per_variant.items() for s in b_seeds
                                      for sc in scs for o in b_sets))
    missing = [k for k in expected if k not in counts]
    extra = [k for k in present if k not in expected]
    twice = [k for k, c in counts.items() if c > 1]
    if not (missing or extra or twice):
        return
    nb = len({k[0] for k in [*expected, *present]})
    parts = []
    for what, keys in (("missing", missing), ("not expected", extra), ("present more than once", twice)):
        if keys:
            shown = "; ".join(_describe(k, nb) for k in keys[:6]) + ("; ..." if len(keys) > 6 else "")
            parts.append(f"{len(keys)} row(s) {what} ({shown})")
    raise IntegrityError(f"{source}: incomplete metrics: {', '.join(parts)}. Tables made from them would average "
                         f"over fewer seeds, scorers or OOD sets than configured. {hint}".rstrip())
