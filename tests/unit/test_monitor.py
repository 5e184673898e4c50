"""The local-vector monitor (lffood.monitor): bins of p_j(y|x) recorded during training, read back at
any threshold that is a multiple of 0.001, and the check of the figures' threshold (figures.monitor.delta)."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lffood.config import validate_config
from lffood.errors import ConfigError
from lffood.monitor import (BINS, COLUMNS, LocalMonitor, background_at, binned_sums, delta_bin, figure_delta_problems,
                            prob_bins)
from lffood.objectives import Forward

SCHEMA = Path(__file__).resolve().parents[2] / "src" / "lffood" / "resources" / "config.schema.yaml"
DELTAS = (0.001, 0.005, 0.01, 0.1, 0.25, 0.5, 0.999)


def _direct(prob: torch.Tensor, norms: torch.Tensor, delta: float) -> dict:
    """What LFF's selection at ``delta`` gives, computed from the vectors themselves (as LFF's own log does)."""
    sel = prob < delta
    n, k = sel.numel(), int(sel.sum())
    return {"frac_selected": k / n,
            "norm_selected": float(norms[sel].double().sum()) / k if k else math.nan,
            "norm_unselected": float(norms[~sel].double().sum()) / (n - k) if n > k else math.nan}


def _epoch(monitor: LocalMonitor, epoch: int, prob: torch.Tensor, norms: torch.Tensor) -> None:
    count, norm_sum = binned_sums(prob_bins(prob), norms)
    monitor.on_epoch({"epoch": epoch}, {"monitor.count": count.double().tolist(),
                                        "monitor.norm_sum": norm_sum.tolist()})


def test_background_at_a_hand_computed_table():
    """Bins 5 (two vectors, norms summing to 3), 100 (one, 4) and 500 (one, 10): at delta 0.1 bins 0-99
    are selected, at 0.101 bins 0-100, at 0.005 none (bin 5 is [0.005, 0.006))."""
    table = pd.DataFrame({"epoch": [1, 1, 1], "bin": [5, 100, 500], "count": [2, 1, 1], "norm_sum": [3.0, 4.0, 10.0]})
    at = background_at(table, 0.1).iloc[0]
    assert (at["frac_selected"], at["norm_selected"], at["norm_unselected"]) == (0.5, 1.5, 7.0)
    at = background_at(table, 0.101).iloc[0]
    assert (at["frac_selected"], at["norm_selected"], at["norm_unselected"]) == pytest.approx((0.75, 7 / 3, 10.0))
    at = background_at(table, 0.006).iloc[0]
    assert at["frac_selected"] == 0.5
    at = background_at(table, 0.005).iloc[0]
    assert at["frac_selected"] == 0.0 and math.isnan(at["norm_selected"]) and at["norm_unselected"] == 17 / 4
    at = background_at(table, 0.999).iloc[0]
    assert at["frac_selected"] == 1.0 and math.isnan(at["norm_unselected"])
    # seeds' files concatenated add up per epoch
    assert background_at(pd.concat([table, table]), 0.1).iloc[0]["norm_selected"] == 1.5


def test_binned_monitor_equals_the_direct_computation_at_every_delta():
    """Probabilities on and next to the bin edges (as float32, the loop's dtype), 0 and 1: the bins read
    at any multiple of 0.001 select exactly the vectors ``p < delta`` selects."""
    gen = torch.Generator().manual_seed(0)
    edges = torch.tensor([d for d in DELTAS], dtype=torch.float32)
    prob = torch.cat([torch.rand(2000, generator=gen), edges, torch.nextafter(edges, torch.zeros(())),
                      torch.nextafter(edges, torch.ones(())), torch.tensor([0.0, 1.0])]).float()
    norms = torch.rand(prob.shape, generator=gen) * 5
    monitor = LocalMonitor()
    _epoch(monitor, 1, prob, norms)
    _epoch(monitor, 2, prob[:700], norms[:700])
    table = monitor.table()
    assert list(table.columns) == list(COLUMNS) and (table["count"] > 0).all()  # non-empty bins only
    assert table.groupby("epoch")["count"].sum().tolist() == [len(prob), 700]
    for delta in DELTAS:
        at = background_at(table, delta).set_index("epoch")
        for epoch, (p, z) in {1: (prob, norms), 2: (prob[:700], norms[:700])}.items():
            want = _direct(p, z, delta)
            got = at.loc[epoch]
            assert got["frac_selected"] == want["frac_selected"], (delta, epoch)
            assert got[["norm_selected", "norm_unselected"]].tolist() == pytest.approx(
                [want["norm_selected"], want["norm_unselected"]], rel=1e-12, nan_ok=True), (delta, epoch)


def test_bins_are_those_of_the_edges():
    p = torch.tensor([0.0, 0.0009, 0.001, 0.0999, 0.1, 0.5, 0.999, 1.0], dtype=torch.float32)
    assert prob_bins(p).tolist() == [0, 0, 1, 99, 100, 500, 999, 999]
    count, norm_sum = binned_sums(prob_bins(p), torch.arange(8.0))
    assert count.shape == norm_sum.shape == (BINS,) and int(count.sum()) == 8
    assert count[0] == 2 and norm_sum[0] == 1.0 and count[999] == 2 and norm_sum[999] == 13.0


def test_on_step_reads_the_head_the_loss_saw():
    """One image, a 1 x 2 map (two local vectors) and a head with two classes: the gt probabilities are
    softmax(W z_j + b)[y], computed by hand; the norms those of z_j."""
    fmap = torch.tensor([[[[3.0, 0.0]], [[4.0, 2.0]]]])  # (1, C=2, 1, 2): z_0 = (3, 4), z_1 = (0, 2)
    weight, bias = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.zeros(2)
    y = torch.tensor([0])
    sums = LocalMonitor().on_step(None, Forward(None, None, fmap, weight, bias), y)
    p0 = 1 / (1 + math.exp(4 - 3))   # softmax((3, 4))[0]
    p1 = 1 / (1 + math.exp(2 - 0))   # softmax((0, 2))[0]
    count, norm_sum = sums["monitor.count"], sums["monitor.norm_sum"]
    assert count[int(p0 * BINS)] == 1 and count[int(p1 * BINS)] == 1 and int(count.sum()) == 2
    assert float(norm_sum[int(p0 * BINS)]) == pytest.approx(5.0) and float(norm_sum[int(p1 * BINS)]) == pytest.approx(2.0)


def test_state_round_trip_keeps_every_epoch():
    gen = torch.Generator().manual_seed(1)
    monitor = LocalMonitor()
    for epoch in (1, 2, 3):
        _epoch(monitor, epoch, torch.rand(300, generator=gen), torch.rand(300, generator=gen))
    again = LocalMonitor()
    again.load_state_dict(monitor.state_dict())
    assert again.table().equals(monitor.table())
    assert LocalMonitor().table().columns.tolist() == list(COLUMNS)  # an imported model's file: header only


@pytest.mark.parametrize("delta", [0, 1, 0.0015, -0.1, 1.5])
def test_the_figure_delta_must_be_a_multiple_of_a_thousandth_inside_0_1(delta):
    ((msg, _),) = figure_delta_problems("b", {"figures": {"monitor": {"delta": delta}}, "lff": {"delta": 0.1}})
    assert "benchmarks.b.figures.monitor.delta" in msg and "multiple of 0.001" in msg
    with pytest.raises(ValueError):
        delta_bin(delta)


def test_the_figure_delta_accepts_multiples_and_defaults_to_lff_delta():
    assert figure_delta_problems("b", {"figures": {"monitor": {"delta": 0.003}}, "lff": {"delta": 0.1}}) == []
    assert delta_bin(0.003) == 3 and delta_bin(0.1) == 100 and delta_bin(0.01) == 10
    ((msg, _),) = figure_delta_problems("b", {"figures": {"monitor": {"delta": None}}, "lff": {"delta": 0.0015}})
    assert "benchmarks.b.figures.monitor.delta" in msg and "lff.delta 0.0015" in msg
    assert figure_delta_problems("b", {"figures": {"monitor": {"delta": 0.003}}, "lff": {"delta": 0.0015}}) == []


def _config(**bench_extra):
    return {"run": ["b"], "benchmarks": {"b": {"dataset": {"source": "embedded", "ood_sets": ["far"]}, **bench_extra}}}


@pytest.mark.parametrize("figures,lff,ok", [
    ({"monitor": {"delta": 0.003}}, {}, True),
    ({}, {"delta": 0.01}, True),
    ({"monitor": {"delta": 0.0015}}, {}, False),
    ({}, {"delta": 0.0015}, False),
    ({"monitor": {"delta": 0}}, {}, False),
    ({"monitor": {"delta": 1}}, {}, False),
])
def test_config_validation_checks_the_figure_delta_at_workflow_start(figures, lff, ok):
    cfg = _config(figures=figures, lff=lff)
    if ok:
        validate_config(cfg, SCHEMA)
        return
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg, SCHEMA)
    assert "benchmarks.b.figures.monitor.delta" in str(exc.value)


def test_the_old_monitor_section_is_gone():
    with pytest.raises(ConfigError, match="monitor"):
        validate_config(_config(monitor={"delta": 0.1}), SCHEMA)
