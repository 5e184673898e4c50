"""Uncertainty of every reported number, and the one rule that calls a difference a win or a loss.

A reported metric (say AUROC of LFF on one OOD set) varies for two reasons: training randomness (the
seed) and the finite test sets (other test images would give another number). This module measures
both and combines them once (docs/statistics.md says it in words):

* **Test sets**: a stratified bootstrap over test images. ID and OOD test images are resampled
  separately, with replacement, each to its own size; resample ``b`` of a split draws the same image
  indices for every model, scorer and training seed (:func:`resample_indices`: the random stream is
  keyed by ``stats.seed``, the split's name and ``b`` only), so differences between models and
  averages over seeds are computed on identical resamples. Every metric of :mod:`lffood.metrics` is
  evaluated for all resamples at once from one sort of the scores (:class:`PairedScores`), chunked
  over resamples so that memory stays bounded (paper scale: 10,000 + 10,000 scores, 1000 resamples).
* **Combining n seeds** (:func:`combine`): estimate = mean over seeds; variance of that mean
  ``V = s²/n + t²``, where ``s²`` is the sample variance over seeds (ddof 1) and ``t²`` the test-set
  sampling variance of the seed mean. All seeds are scored on the same test images, so their test-set
  errors are correlated and ``t²`` is not ``mean(se²)/n``:

  - a table cell (:func:`cell`) uses the bound ``t² = mean_s se_s²`` (the variance of a mean is at
    most the mean of the variances, Cauchy-Schwarz; equality when the seeds' errors are perfectly
    correlated), so its interval is conservative;
  - a paired difference method − control (:func:`paired`) gets ``t²`` exactly: the variance over
    joint resamples (same images for every seed and both models) of the seed-mean difference.

  The interval is ``estimate ± q·√V`` with ``q`` the Student-t quantile at the Welch-Satterthwaite
  degrees of freedom ``df = V² / ((s²/n)² / (n − 1))`` (the test-set part treated as known:
  ``df = n − 1`` when it is 0, ``df → ∞`` when the seeds agree exactly). With one seed ``s²`` is
  unknown: the interval covers the test sets only, and :attr:`Interval.seeds_known` is False, which
  every output that shows it must say.
* **Verdict** (:func:`verdict`): 'win' when the whole interval is on the better side of 0, 'loss'
  when it is on the worse side, 'tie' otherwise; for a lower-is-better metric (FPR95) the sign is
  flipped, so that 'win' always means the method is better.

Everything is deterministic: the same ``stats.seed``, ``stats.bootstrap`` and scores give the same
numbers on every run.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .metrics import HIGHER_IS_BETTER, METRICS

#: resamples per block of the random stream: resample b of a split is row b % BLOCK of block b // BLOCK,
#: whatever the chunking, so the first B resamples are the same for any larger B
BLOCK = 25
#: the most (resample x score) entries one chunk holds in one array: 512 kB of float64, so that the
#: twenty or so passes over a chunk stay in the CPU's cache (half the CPU time of 16 MB chunks on the
#: embedded data; the resampled indices are drawn a whole block of the random stream at a time)
MAX_ELEMENTS = 2 ** 16


# ----------------------------------------------------------------------------- resampling
def _block_rng(seed: int, split: str, block: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(block)])


def resample_indices(n: int, split: str, start: int, stop: int, seed: int = 0) -> np.ndarray:
    """Image indices of resamples ``start .. stop-1`` of split ``split`` (``n`` images), shape
    ``(stop - start, n)``: uniform with replacement. They depend on ``(seed, split, n, b)`` only, so
    every model, scorer and training seed scored on the split gets the same resample ``b``."""
    if n < 1:
        raise ValueError(f"split '{split}' has no images to resample")
    rows = []
    for block in range(start // BLOCK, -(-stop // BLOCK)):
        idx = _block_rng(seed, split, block).integers(0, n, size=(BLOCK, n))
        lo, hi = max(start - block * BLOCK, 0), min(stop - block * BLOCK, BLOCK)
        rows.append(idx[lo:hi])
    return np.concatenate(rows) if rows else np.empty((0, n), dtype=np.int64)


def _windows(n_boot: int, chunk: int):
    """``(lo, hi, [(start, stop), ...])``: resamples ``lo .. hi-1`` drawn at once (whole blocks of the
    random stream, so that no block is drawn twice), evaluated in chunks of at most ``chunk``."""
    span = -(-chunk // BLOCK) * BLOCK
    for lo in range(0, n_boot, span):
        hi = min(n_boot, lo + span)
        yield lo, hi, [(a, min(hi, a + chunk)) for a in range(lo, hi, chunk)]


def counts(indices: np.ndarray) -> np.ndarray:
    """How often each image is drawn in each resample (the multinomial count weights), float64."""
    c, n = indices.shape
    flat = (indices + n * np.arange(c)[:, None]).ravel()
    return np.bincount(flat, minlength=c * n).reshape(c, n).astype(np.float64)


# ----------------------------------------------------------------------------- weighted metrics
class Buffers:
    """Scratch arrays reused from chunk to chunk, by name and shape. A chunk's twenty or so passes
    would otherwise each allocate a fresh array: half a megabyte, which the C library maps from and
    returns to the kernel every time (over a million page faults per model on the embedded data,
    more time in the kernel than in the arithmetic)."""

    def __init__(self):
        self._arrays: dict = {}

    def __call__(self, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
        key = (name, shape, np.dtype(dtype).str)
        if key not in self._arrays:
            self._arrays[key] = np.zeros(shape, dtype)
        return self._arrays[key]


class PairedScores:
    """One (ID, OOD) pair of score arrays, sorted once, whose metrics are then evaluated for any
    number of weightings of the images at once (:meth:`evaluate`). With unit weights the numbers are
    those of :mod:`lffood.metrics` (same tie conventions, to the last bit); with bootstrap count
    weights they are the metrics of the resampled arrays.

    The scores of both arrays are sorted together and grouped into distinct values. Per weighting,
    the cumulative ID and OOD weight up to each group is all every metric needs:

    * AUROC = Σ_g id_g · (OOD weight below g + ½ ood_g) / (W·V) (ties count one half);
    * FPR95: the threshold is the group holding the k-th largest ID score (k = ⌊0.95·W⌋, as
      ``sort(id)[-k]``); FPR = OOD weight at or above it / V;
    * AUPR-In = Σ_g (R_g − R_{g+1}) · P_g over groups from the top (ID positive), AUPR-Out the same
      from the bottom with OOD positive (scikit-learn's average precision, as lffood.metrics).
    """

    def __init__(self, id_scores, ood_scores):
        x = np.asarray(id_scores, dtype=np.float64).ravel()
        y = np.asarray(ood_scores, dtype=np.float64).ravel()
        if x.size == 0 or y.size == 0:
            raise ValueError("empty score array")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("scores contain NaN or infinity")
        self.n_id, self.n_ood = len(x), len(y)
        z = np.concatenate([x, y])
        order = np.argsort(z, kind="mergesort")  # the one sort
        zs = z[order]
        group = np.cumsum(np.r_[True, zs[1:] != zs[:-1]]) - 1  # of each sorted score
        self.n_groups = int(group[-1]) + 1
        is_id = order < self.n_id
        # each array's images in ascending order of score, and how many of them are in groups <= g
        self.id_sorted, self.ood_sorted = order[is_id], order[~is_id] - self.n_id
        self.id_upto = np.cumsum(np.bincount(group[is_id], minlength=self.n_groups))
        self.ood_upto = np.cumsum(np.bincount(group[~is_id], minlength=self.n_groups))

    @staticmethod
    def _per_group(weights, sorted_idx, counts_upto, name: str, buf: Buffers) -> tuple[np.ndarray, np.ndarray]:
        """Per row of ``weights``: the cumulative weight up to and including each group, and each
        group's own weight (exact for integer weights: differences of integer sums)."""
        c, n = weights.shape
        ranked = buf(f"{name}_ranked", (c, n))
        np.take(weights, sorted_idx, axis=1, out=ranked)
        running = buf(f"{name}_running", (c, n + 1))  # column 0 stays 0: the weight of no image
        np.cumsum(ranked, axis=1, out=running[:, 1:])
        upto = buf(f"{name}_upto", (c, len(counts_upto)))
        np.take(running, counts_upto, axis=1, out=upto, mode="clip")
        own = buf(f"{name}_own", upto.shape)
        own[:, 0] = upto[:, 0]
        np.subtract(upto[:, 1:], upto[:, :-1], out=own[:, 1:])
        return upto, own

    def evaluate(self, id_weights, ood_weights, which: Sequence[str] = METRICS, tpr: float = 0.95,
                 buf: Buffers | None = None) -> dict[str, np.ndarray]:
        """The metrics ``which`` for each row of the weights (``(c, n_id)`` and ``(c, n_ood)``, or 1-d
        for one weighting): ``{metric: array of c values}``, fractions. ``buf``: scratch arrays to
        reuse across calls (:class:`Buffers`)."""
        w_id = np.atleast_2d(np.asarray(id_weights, dtype=np.float64))
        w_ood = np.atleast_2d(np.asarray(ood_weights, dtype=np.float64))
        if w_id.shape[1] != self.n_id or w_ood.shape[1] != self.n_ood or w_id.shape[0] != w_ood.shape[0]:
            raise ValueError(f"weights {w_id.shape} / {w_ood.shape} do not fit {self.n_id} ID and {self.n_ood} "
                             "OOD scores with as many rows each")
        buf = buf if buf is not None else Buffers()
        # cumulative (ca, co) and own (a, o) ID and OOD weight per group, ascending scores
        ca, a = self._per_group(w_id, self.id_sorted, self.id_upto, "id", buf)
        co, o = self._per_group(w_ood, self.ood_sorted, self.ood_upto, "ood", buf)
        W, V = ca[:, -1].copy(), co[:, -1].copy()
        out = {}
        if "auroc" in which:  # sum_g a_g (OOD below g + o_g / 2) = sum_g a_g co_g - sum_g a_g o_g / 2
            num = np.einsum("ij,ij->i", a, co) - 0.5 * np.einsum("ij,ij->i", a, o)
            out["auroc"] = num / (W * V)
        if "fpr95" in which:
            ks = np.floor(tpr * W)
            if np.any(ks < 1):
                raise ValueError(f"need at least {int(np.ceil(1 / tpr))} ID scores for tpr={tpr}")
            # the threshold group g: the last with ID weight >= k at or above it, i.e. ca[g-1] <= W - k
            g = np.count_nonzero(ca[:, :-1] <= (W - ks)[:, None], axis=1)
            rows = np.arange(len(g))
            out["fpr95"] = (V - co[rows, g] + o[rows, g]) / V  # OOD weight at or above the threshold
        if "aupr_in" in which:  # ID positive: thresholds from the top
            tp, fp = buf("tp", a.shape), buf("fp", a.shape)
            np.cumsum(a[:, ::-1], axis=1, out=tp)
            np.cumsum(o[:, ::-1], axis=1, out=fp)
            out["aupr_in"] = self._ap(tp, fp, W, buf)
        if "aupr_out" in which:  # OOD positive, scored by -score: thresholds from the bottom
            out["aupr_out"] = self._ap(co, ca, V, buf)
        return {m: out[m] for m in which}

    @staticmethod
    def _ap(tp: np.ndarray, fp: np.ndarray, positives: np.ndarray, buf: Buffers) -> np.ndarray:
        """Average precision from cumulative true / false positives per threshold, in the order and
        with the arithmetic of :func:`lffood.metrics.average_precision` (so unit weights give its
        very bits)."""
        precision = buf("precision", tp.shape)
        np.add(tp, fp, out=precision)
        # nothing accepted yet (0 / 0): precision 0, and its recall step is 0 as well; a positive
        # weight sum is never below the floor (count weights are integers)
        np.maximum(precision, np.finfo(np.float64).tiny, out=precision)
        np.divide(tp, precision, out=precision)
        recall = buf("recall", tp.shape)
        np.divide(tp, positives[:, None], out=recall)
        step = buf("step", tp.shape)
        step[:, 0] = recall[:, 0]
        np.subtract(recall[:, 1:], recall[:, :-1], out=step[:, 1:])
        step *= precision
        return np.sum(step, axis=1)


def weighted_metrics(id_scores, ood_scores, id_weights, ood_weights, which: Sequence[str] = METRICS,
                     tpr: float = 0.95) -> dict[str, np.ndarray]:
    """:meth:`PairedScores.evaluate` of one pair (sorted once)."""
    return PairedScores(id_scores, ood_scores).evaluate(id_weights, ood_weights, which, tpr)


def bootstrap(scores: Mapping, ood_sets: Sequence[str], *, n_boot: int = 1000, seed: int = 0, id_split: str = "test",
              which: Sequence[str] = METRICS, max_elements: int = MAX_ELEMENTS) -> dict:
    """Stratified bootstrap of the metrics of several score sets on the same test images.

    ``scores``: key -> {split: per-image scores} (a key per scorer, model or seed), each with the ID
    test split ``id_split`` and every OOD set of ``ood_sets``, of equal sizes across keys (the same
    images, in the same order). Returns key -> OOD set -> metric -> ``n_boot`` values (fractions);
    resample ``b`` uses the same ID and OOD images for every key (:func:`resample_indices`), and its
    ID images for every OOD set. Chunked over resamples: at most about ``max_elements`` entries per
    array at a time (:data:`MAX_ELEMENTS`)."""
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    keys = list(scores)
    splits = [id_split, *ood_sets]
    sizes = {}
    for key in keys:
        for s in splits:
            if s not in scores[key]:
                raise DataError(f"scores of {key}: no split '{s}' (have {sorted(scores[key])})")
            n = len(scores[key][s])
            if sizes.setdefault(s, n) != n:
                raise DataError(f"scores of {key}: split '{s}' holds {n} scores, those of {keys[0]} {sizes[s]}: "
                                "a paired bootstrap needs the same test images for every model")
    pairs = {k: {o: PairedScores(scores[k][id_split], scores[k][o]) for o in ood_sets} for k in keys}
    buf = Buffers()
    out = {k: {o: {m: np.empty(n_boot) for m in which} for o in ood_sets} for k in keys}
    widest = sizes[id_split] + max((sizes[o] for o in ood_sets), default=0)
    chunk = max(1, min(n_boot, max_elements // max(widest, 1)))
    for lo, hi, parts in _windows(n_boot, chunk):
        idx = {s: resample_indices(sizes[s], s, lo, hi, seed) for s in splits}
        for start, stop in parts:
            w_id = counts(idx[id_split][start - lo:stop - lo])
            for o in ood_sets:
                w_ood = counts(idx[o][start - lo:stop - lo])
                for k in keys:
                    for m, values in pairs[k][o].evaluate(w_id, w_ood, which, buf=buf).items():
                        out[k][o][m][start:stop] = values
    return out


def bootstrap_mean(values, split: str = "test", *, n_boot: int = 1000, seed: int = 0,
                   max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """The mean of per-image ``values`` (e.g. 1 where the ID test image is classified correctly: ID
    accuracy) on the same resamples of ``split`` as :func:`bootstrap` uses: ``n_boot`` values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    out = np.empty(n_boot)
    chunk = max(1, min(n_boot, max_elements // max(len(v), 1)))
    for lo, hi, parts in _windows(n_boot, chunk):
        idx = resample_indices(len(v), split, lo, hi, seed)
        for start, stop in parts:
            out[start:stop] = counts(idx[start - lo:stop - lo]) @ v / len(v)
    return out


def standard_error(samples) -> float:
    """Bootstrap standard error: the standard deviation (ddof 1) of the resampled values."""
    return float(np.std(np.asarray(samples, dtype=np.float64), ddof=1))


# ----------------------------------------------------------------------------- combining seeds
def t_quantile(level: float, df: float) -> float:
    """The two-sided Student-t quantile ``t_{(1 + level)/2, df}`` (the normal one for infinite df)."""
    from scipy import stats

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    p = 0.5 + level / 2
    return float(stats.norm.ppf(p) if math.isinf(df) else stats.t.ppf(p, df))


def welch_df(seed_var: float, test_var: float, n: int) -> float:
    """Welch-Satterthwaite degrees of freedom of ``V = seed_var + test_var`` where ``seed_var = s²/n``
    has ``n - 1`` degrees of freedom and ``test_var`` is treated as known: ``V² / (seed_var² / (n-1))``;
    infinite with one seed or no seed spread (the interval is then the test sets' alone)."""
    if n <= 1 or seed_var <= 0:
        return math.inf
    return (seed_var + test_var) ** 2 / (seed_var ** 2 / (n - 1))


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its interval. ``se_seeds`` = √(s²/n), ``se_test`` = √t²; ``seeds_known``
    is False with one seed: then the interval covers the test sets only."""

    estimate: float
    low: float
    high: float
    df: float
    se_seeds: float
    se_test: float
    n_seeds: int
    level: float

    @property
    def seeds_known(self) -> bool:
        return self.n_seeds > 1

    @property
    def se(self) -> float:
        return math.sqrt(self.se_seeds ** 2 + self.se_test ** 2)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def combine(values, test_var: float, level: float = 0.95) -> Interval:
    """The one combination rule (module docstring): ``values`` are the per-seed estimates, ``test_var``
    the test-set variance t² of their mean. V = s²/n + t²; interval mean ± q·√V, q the Student-t
    quantile at the Welch-Satterthwaite df (:func:`welch_df`)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = len(v)
    if n == 0:
        raise ValueError("no seeds to combine")
    if not np.all(np.isfinite(v)) or not math.isfinite(test_var) or test_var < 0:
        raise ValueError(f"values {v.tolist()} / test variance {test_var} must be finite (and the variance >= 0)")
    mean = float(v.mean())
    seed_var = float(v.var(ddof=1)) / n if n > 1 else 0.0
    df = welch_df(seed_var, test_var, n)
    half = t_quantile(level, df) * math.sqrt(seed_var + test_var)
    return Interval(mean, mean - half, mean + half, df, math.sqrt(seed_var), math.sqrt(test_var), n, level)


def cell(values, ses, level: float = 0.95) -> Interval:
    """A table cell: per-seed values and their bootstrap standard errors. The seeds share the test
    set, so t² is bounded by the mean of the squared standard errors (conservative)."""
    se = np.asarray(ses, dtype=np.float64).ravel()
    if len(se) != len(np.ravel(values)):
        raise ValueError(f"{len(np.ravel(values))} values but {len(se)} standard errors")
    return combine(values, float(np.mean(se ** 2)), level)


def paired(deltas, resampled, level: float = 0.95) -> Interval:
    """A paired difference: ``deltas`` (n seeds) = metric(method) − metric(control) per seed on the
    full test sets; ``resampled`` (n seeds x B) the same differences on joint resamples (the same
    images for every seed and both models). t² is the variance over resamples of their seed mean."""
    r = np.atleast_2d(np.asarray(resampled, dtype=np.float64))
    if r.shape[0] != len(np.ravel(deltas)) or r.shape[1] < 2:
        raise ValueError(f"resampled differences of shape {r.shape} do not fit {len(np.ravel(deltas))} seeds")
    return combine(deltas, float(np.var(r.mean(axis=0), ddof=1)), level)


def average_se(ses) -> float:
    """A bound of the standard error of a mean over OOD sets from the sets' own (which share the ID
    images): the standard deviation of a mean is at most the mean of the standard deviations."""
    return float(np.mean(np.asarray(ses, dtype=np.float64)))


# ----------------------------------------------------------------------------- the verdict
def verdict(interval: Interval | tuple[float, float], higher_is_better: bool = True) -> str:
    """'win' when the interval of method − control lies entirely on the better side of 0, 'loss' when
    entirely on the worse side, else 'tie' (for lower-is-better metrics such as FPR95 'better' is
    below 0). The one rule every table, CSV and the README use."""
    low, high = (interval.low, interval.high) if isinstance(interval, Interval) else interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    if not higher_is_better:
        low, high = -high, -low
    if low > 0:
        return "win"
    if high < 0:
        return "loss"
    return "tie"


def metric_verdict(interval: Interval, metric: str) -> str:
    """:func:`verdict` with the direction of ``metric`` (lffood.metrics.HIGHER_IS_BETTER)."""
    return verdict(interval, HIGHER_IS_BETTER[metric])


RULE = ("95% interval over seeds and test images (bootstrap over test images, Student-t over seeds); "
        "win / loss only when it excludes 0, else tie")
