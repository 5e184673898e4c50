"""The local-vector monitor: how the local vectors of the training images split by p_j(y|x) during training.

Every training job of the workflow runs :class:`LocalMonitor` (a :class:`lffood.hooks.Hook`). At
each step, with the head as the loss saw it (before the optimiser's step), it puts every local
vector z_j of the batch in one of ``BINS`` = 1000 fixed bins of its ground-truth probability
p_j(y|x) (LFF eq. 4; bin i = [i/1000, (i+1)/1000), p = 1 in the last) and sums, per bin, the
vectors and their L2 norms, on the device. The job writes the epochs' bins as a small tidy CSV
beside its history (:data:`COLUMNS`, non-empty bins only; ``pipeline.run_training``).

The monitor has no threshold: it is not part of a training job's identity, and changing
``lff.delta`` retrains no model but LFF's. :func:`background_at` turns the bins into what LFF's
selection at any threshold ``delta`` that is a multiple of 1/1000 would give (the fraction of
vectors with p_j(y|x) < delta and the mean norms of those and the rest), exactly: a bin edge is the
same float32 number the loop compares with. The local-norm figure draws it at the benchmark's
``figures.monitor.delta`` (:func:`figure_delta_problems` checks that key at workflow start).

torch is imported on first use (``lffood.lazy``): the report rules read the CSVs without it, and
the config check runs at workflow parse time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from .hooks import Hook
from .lazy import torch

BINS = 1000
COLUMNS = ("epoch", "bin", "count", "norm_sum")
KEY = "figures.monitor.delta"  # the benchmark key of the figure's threshold
_COUNT, _NORM = "monitor.count", "monitor.norm_sum"


# ----------------------------------------------------------------------------- during training
def prob_bins(prob):
    """The bin of every probability: i with i/BINS <= p < (i+1)/BINS (p = 1: the last bin). The edges
    are float32, the numbers ``p < delta`` compares float32 probabilities with (exact at every edge)."""
    edges = (torch.arange(1, BINS, dtype=torch.float64, device=prob.device) / BINS).to(prob.dtype)
    return torch.bucketize(prob, edges, right=True)


def binned_sums(bins, values) -> tuple:
    """``(count, sum of values)`` per bin, (BINS,) int64 and float64, on the device and deterministic
    (a stable sort and a cumulative sum instead of atomic adds; no host synchronisation)."""
    bins, order = torch.sort(bins.flatten(), stable=True)
    cum = torch.cat([values.new_zeros(1, dtype=torch.float64), values.flatten()[order].double().cumsum(0)])
    ends = torch.searchsorted(bins, torch.arange(BINS + 1, device=bins.device, dtype=bins.dtype))
    return ends[1:] - ends[:-1], cum[ends[1:]] - cum[ends[:-1]]


class LocalMonitor(Hook):
    """The training loop's hook that bins the local vectors by p_j(y|x) (module docstring). No
    gradients, no random draws: a run's weights are the same with and without it."""

    def __init__(self):
        self.epochs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (epoch, bins, counts, norm sums)

    def on_step(self, model, out, targets):
        from .local import local_gt_prob, local_norms

        with torch.no_grad():
            fmap = out.fmap.detach()
            bins = prob_bins(local_gt_prob(fmap, out.weight, out.bias, targets))
            count, norm_sum = binned_sums(bins, local_norms(fmap))
        return {_COUNT: count, _NORM: norm_sum}

    def on_epoch(self, row, sums) -> str:
        if _COUNT not in sums:
            return ""
        count = np.rint(np.asarray(sums[_COUNT], dtype=np.float64)).astype(np.int64)
        norm_sum = np.asarray(sums[_NORM], dtype=np.float64)
        kept = np.flatnonzero(count)
        self.epochs.append((int(row["epoch"]), kept, count[kept], norm_sum[kept]))
        total = int(count.sum())
        if not total:
            return ""
        median = int(np.searchsorted(np.cumsum(count), total / 2))
        return f"local vectors: mean |z| {norm_sum.sum() / total:.3f}, median p_j(y|x) {median / BINS:.3f}"

    def columns(self) -> dict[str, np.ndarray]:
        """The recorded epochs as the columns of :data:`COLUMNS`."""
        cols = {"epoch": [np.full(len(b), e) for e, b, _, _ in self.epochs], "bin": [b for _, b, _, _ in self.epochs],
                "count": [c for _, _, c, _ in self.epochs], "norm_sum": [s for _, _, _, s in self.epochs]}
        dtypes = {"epoch": np.int64, "bin": np.int64, "count": np.int64, "norm_sum": np.float64}
        return {k: np.concatenate(v).astype(dtypes[k]) if v else np.zeros(0, dtypes[k]) for k, v in cols.items()}

    def table(self):
        """The monitor file's content: a DataFrame of :data:`COLUMNS`, one row per epoch and non-empty bin."""
        import pandas as pd

        return pd.DataFrame(self.columns(), columns=list(COLUMNS))

    def state_dict(self) -> dict:
        return {k: torch.from_numpy(v) for k, v in self.columns().items()}

    def load_state_dict(self, state: Mapping) -> None:
        cols = {k: np.asarray(state[k].cpu() if hasattr(state[k], "cpu") else state[k]) for k in COLUMNS}
        self.epochs = [(int(e), cols["bin"][m], cols["count"][m], cols["norm_sum"][m])
                       for e in np.unique(cols["epoch"]) for m in [cols["epoch"] == e]]


# ----------------------------------------------------------------------------- reading the bins
def delta_bin(delta: float) -> int:
    """The number k of bins below ``delta`` = k / BINS; ValueError unless 0 < delta < 1 is a multiple of 1/BINS."""
    k = round(delta * BINS)
    if not 0 < delta < 1 or not math.isclose(delta * BINS, k, rel_tol=0, abs_tol=1e-6):
        raise ValueError(f"{delta!r} is not a multiple of {1 / BINS:g} strictly between 0 and 1")
    return k


def background_at(table, delta: float):
    """Per epoch of a monitor table (:data:`COLUMNS`; several files concatenated add up): the fraction
    of local vectors with p_j(y|x) < ``delta`` (``frac_selected``, LFF's selection at that threshold)
    and the mean norm of those (``norm_selected``) and of the rest (``norm_unselected``; NaN where
    there are none). Exact for ``delta`` a multiple of 1/BINS (:func:`delta_bin`)."""
    import pandas as pd

    k = delta_bin(delta)
    rows = []
    for epoch, g in table.groupby("epoch", sort=True):
        sel = g["bin"].to_numpy() < k
        count, norm = g["count"].to_numpy(dtype=np.float64), g["norm_sum"].to_numpy(dtype=np.float64)
        n, n_sel = count.sum(), count[sel].sum()
        rows.append({"epoch": int(epoch), "frac_selected": n_sel / n if n else math.nan,
                     "norm_selected": norm[sel].sum() / n_sel if n_sel else math.nan,
                     "norm_unselected": norm[~sel].sum() / (n - n_sel) if n > n_sel else math.nan})
    return pd.DataFrame(rows, columns=["epoch", "frac_selected", "norm_selected", "norm_unselected"])


def read_background(paths: Iterable[str], delta: float):
    """:func:`background_at` of each monitor file (e.g. one per seed), one frame per file in order."""
    import pandas as pd

    return [background_at(pd.read_csv(p), delta) for p in paths]


# ----------------------------------------------------------------------------- configuration
def figure_delta(bench: Mapping) -> float | None:
    """The threshold the figures draw the monitor at: ``figures.monitor.delta``, or the benchmark's ``lff.delta``."""
    d = bench.get("figures", {}).get("monitor", {}).get("delta")
    return d if d is not None else bench.get("lff", {}).get("delta")


def figure_delta_problems(bname: str, bench: Mapping) -> list[tuple[str, tuple[str, ...]]]:
    """The config check of ``benchmarks.<bname>.figures.monitor.delta`` (:func:`lffood.config.validate_config`):
    the threshold, its own or the benchmark's ``lff.delta`` when null, must be a multiple of 1/1000
    strictly between 0 and 1, the bins the training jobs record. Each problem: ``(message, related keys)``."""
    own = bench.get("figures", {}).get("monitor", {}).get("delta")
    delta = figure_delta(bench)
    if delta is None:
        return []
    try:
        delta_bin(delta)
    except ValueError:
        key = f"benchmarks.{bname}.{KEY}"
        what = f"{delta!r}" if own is not None else f"null, so the benchmark's lff.delta {delta!r},"
        return [(f"key '{key}': {what} is not a multiple of {1 / BINS:g} strictly between 0 and 1 (the training "
                 f"jobs record p_j(y|x) in {BINS} bins; the local-norm figure reads them at this threshold). Set "
                 f"'{key}' to one, e.g. {min(max(round(delta * BINS), 1), BINS - 1) / BINS:g}.",
                 (f"benchmarks.{bname}.lff.delta",))]
    return []
