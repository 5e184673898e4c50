"""Backbones, learning-rate schedules, the training loop, the collapse guard and checkpoints."""

import math

import numpy as np
import pytest
import torch

from lffood.checkpoint import load_checkpoint, save_checkpoint
from lffood.data.arrays import Split
from lffood.data.loader import TensorImages
from lffood.errors import CollapseError, ConfigError, LffoodError
from lffood.hooks import OnEpoch
from lffood.models import PRESETS, build_model
from lffood.objectives import build_objective, register, unregister
from lffood.objectives.base import Objective
from lffood.monitor import LocalMonitor, background_at
from lffood.training import build_optimizer, lr_at, train

torch.set_num_threads(1)

TINY = {"arch": "resnet", "blocks": [1, 1], "widths": [8, 16]}
CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- models
def test_resnet_forward_shapes_and_head():
    torch.manual_seed(0)
    model = build_model(TINY, 5).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        logits, pooled, fmap = model(x, return_features=True)
        plain = model(x)
    assert logits.shape == (2, 5)
    assert pooled.shape == (2, 16)
    assert fmap.shape == (2, 16, 8, 8)
    torch.testing.assert_close(pooled, fmap.mean((2, 3)))
    torch.testing.assert_close(logits, model.head(pooled))
    torch.testing.assert_close(plain, logits)
    assert model.feature_dim == 16 and model.num_classes == 5
    assert float(fmap.min()) >= 0.0  # ReLU output


def test_resnet34_preset_map_size():
    assert PRESETS["resnet34"]["blocks"] == [3, 4, 6, 3]
    model = build_model({"arch": "resnet34"}, 10).eval()
    with torch.no_grad():
        logits, pooled, fmap = model(torch.zeros(1, 3, 32, 32), return_features=True)
    assert fmap.shape == (1, 512, 4, 4)
    assert pooled.shape == (1, 512) and logits.shape == (1, 10)
    assert model.head.in_features == 512


def test_unknown_arch_and_bad_spec():
    with pytest.raises(ConfigError, match="vgg"):
        build_model({"arch": "vgg16"}, 3)
    with pytest.raises(ConfigError):
        build_model({"arch": "resnet", "blocks": [1, 1], "widths": [8]}, 3)


# ----------------------------------------------------------------------------- schedules
def _stage(**kw):
    st = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "epochs": 30,
          "batch_size": 16, "schedule": {"type": "step", "milestones": [15], "gamma": 0.1},
          "augment": {"crop_padding": 1, "hflip": True, "color_jitter": 0.0}}
    st.update(kw)
    return st


def test_lr_step():
    st = _stage()
    assert lr_at(st, 0) == pytest.approx(0.1)
    assert lr_at(st, 14) == pytest.approx(0.1)
    assert lr_at(st, 15) == pytest.approx(0.01)
    assert lr_at(st, 29) == pytest.approx(0.01)
    st2 = _stage(schedule={"type": "step", "milestones": [2, 4], "gamma": 0.5})
    assert [lr_at(st2, e) for e in range(6)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_lr_cosine_and_constant():
    st = _stage(schedule={"type": "cosine"}, epochs=10)
    assert lr_at(st, 0) == pytest.approx(0.1)
    assert lr_at(st, 5) == pytest.approx(0.05)
    assert lr_at(st, 3) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.3)))
    assert lr_at(_stage(schedule={"type": "constant"}), 29) == 0.1


def test_build_optimizer():
    model = torch.nn.Linear(2, 2)
    sgd = build_optimizer(model, _stage())
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-4
    assert isinstance(build_optimizer(model, _stage(optimizer="adamw")), torch.optim.AdamW)
    with pytest.raises(LffoodError):
        build_optimizer(model, _stage(optimizer="lbfgs"))


# ----------------------------------------------------------------------------- training
def _data(n=64, k=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    split = Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % k)
    return TensorImages(split, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


SMALL = {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}
LFF = {"delta": 0.1, "mu": 1.0, "lambda": 1.0}
NO_GUARD = {"enabled": False}


def obj(name="ce", params=None, classes=4, dim=8):
    return build_objective(name, params, feature_dim=dim, num_classes=classes)


def test_train_history_with_lff():
    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    before = [p.detach().clone() for p in model.parameters()]
    seen = []
    hist = train(model, _data(), _stage(epochs=2, lr=0.05, schedule={"type": "step", "milestones": [1], "gamma": 0.1}),
                 objective=obj("lff", LFF), seed=0, device=CPU, guard=NO_GUARD, hooks=[OnEpoch(seen.append)])
    assert len(hist) == 2 and seen == hist
    for key in ("ce", "acc", "lff", "frac_selected", "norm_selected", "norm_unselected", "lr", "loss", "epoch",
                "feature_norm"):
        assert key in hist[0]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert [h["lr"] for h in hist] == pytest.approx([0.05, 0.005])
    for h in hist:
        assert 0.0 <= h["acc"] <= 1.0 and 0.0 <= h["frac_selected"] <= 1.0
        assert np.isfinite(h["ce"]) and h["lff"] >= 0.0
        assert h["loss"] == pytest.approx(h["ce"] + h["lff"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_train_ce_with_and_without_the_local_monitor(caplog):
    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    hist = train(model, _data(), _stage(epochs=2), objective=obj(), seed=0, device=CPU, guard=NO_GUARD)
    assert "lff" not in hist[0] and "frac_selected" not in hist[0]
    assert hist[0]["loss"] == pytest.approx(hist[0]["ce"], rel=1e-6)
    # the monitor changes nothing of the run (no gradients, no random draws) and adds nothing to its history
    torch.manual_seed(0)
    monitored, monitor = build_model(SMALL, 4), LocalMonitor()
    with caplog.at_level("INFO", logger="lffood.training"):
        mon = train(monitored, _data(), _stage(epochs=2), objective=obj(), seed=0, device=CPU, guard=NO_GUARD,
                    hooks=[monitor])
    for a, b in zip(model.state_dict().values(), monitored.state_dict().values()):
        assert torch.equal(a, b)
    assert [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in mon] == \
        [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in hist]
    assert caplog.text.count("median p_j(y|x)") == 2  # one log line per epoch, with the monitor's summary
    # the CE control's monitor read at LFF's delta is what LFF with lambda 0 logs of its own selection
    torch.manual_seed(0)
    lam0 = train(build_model(SMALL, 4), _data(), _stage(epochs=2), objective=obj("lff", {**LFF, "lambda": 0.0}),
                 seed=0, device=CPU, guard=NO_GUARD)
    at = background_at(monitor.table(), LFF["delta"])
    assert list(at["epoch"]) == [1, 2]
    for key in ("frac_selected", "norm_selected", "norm_unselected"):
        assert list(at[key]) == pytest.approx([h[key] for h in lam0], rel=1e-6), key
    assert [h["ce"] for h in mon] == pytest.approx([h["ce"] for h in lam0], rel=1e-6)
    # every location of every image of every epoch is in one bin
    assert monitor.table().groupby("epoch")["count"].sum().tolist() == [64 * 4 * 4] * 2  # 4 x 4 maps


def test_train_is_deterministic():
    outs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = build_model(SMALL, 4)
        train(model, _data(32), _stage(epochs=1), objective=obj("lff", LFF), seed=3, device=CPU, guard=NO_GUARD)
        outs.append([p.detach().clone() for p in model.state_dict().values()])
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name,params,keys", [
    ("logitnorm", {"tau": 0.5}, ["logit_norm"]),
    ("ssod", {"gamma": 0.6}, ["l_ood", "frac_id", "frac_ood"]),
    ("alpa", {"dim": 4}, ["alpa", "sim_pos", "sim_neg"]),
])
def test_every_objective_trains_through_the_one_loop(name, params, keys):
    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    o = obj(name, params)
    before = [p.detach().clone() for p in o.modules.parameters()]
    monitor = LocalMonitor()
    hist = train(model, _data(), _stage(epochs=1, batch_size=8), objective=o, seed=0, device=CPU, guard=NO_GUARD,
                 hooks=[monitor])
    for key in keys + ["ce", "acc", "images_per_s"]:
        assert key in hist[0] and np.isfinite(hist[0][key]), key
    views = 2 if o.two_views else 1
    assert monitor.table()["count"].sum() == 64 * views * 4 * 4  # every local vector the loss saw (4 x 4 maps)
    assert all(not torch.equal(a, b) for a, b in zip(before, o.modules.parameters()))  # own modules trained
    assert hist[0]["images_per_s"] > 0


def test_two_views_double_the_samples_not_the_images():
    seen = {}

    @register("toy_views")
    class ToyViews(Objective):
        """Counts what the loop hands it."""

        two_views = True
        stats = {"batch": "samples per batch"}

        def loss(self, out, targets):
            seen.setdefault("shapes", []).append((tuple(out.fmap.shape), tuple(targets.shape), out.views))
            half = targets.shape[0] // 2
            assert torch.equal(targets[:half], targets[half:])  # labels repeated for the second views
            return torch.nn.functional.cross_entropy(out.logits, targets), {"batch": torch.tensor(float(len(targets)))}

    try:
        hist = train(build_model(SMALL, 4), _data(n=32), _stage(epochs=1, batch_size=8), objective=obj("toy_views"),
                     seed=0, device=CPU, guard=NO_GUARD)
    finally:
        unregister("toy_views")
    assert {s for s in seen["shapes"]} == {((16, 8, 4, 4), (16,), 2)}
    assert hist[0]["images_per_s"] > 0 and hist[0]["batch"] == pytest.approx(16 / 16)


def test_collapse_guard_vanished_features():
    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    guard = {"enabled": True, "chance_factor": 1.5, "min_feature_norm": 1e9, "patience": 1}
    with pytest.raises(CollapseError) as exc:
        train(model, _data(), _stage(epochs=3), objective=obj("lff", LFF), seed=0, device=CPU, guard=guard,
              stage_name="finetune[lff]")
    msg = str(exc.value)
    assert "lff.lambda" in msg and "lff.mu" in msg and "finetune.lr" in msg
    assert "epoch 1" in msg and "finetune" in msg
    assert msg.endswith(obj("lff", LFF).collapse_advice()) and "raise lff.mu" in msg  # LFF's own advice


def test_collapse_advice_comes_from_the_objective():
    """The guard's message ends with the objective's advice: LFF's names its parameters; CE's names no LFF key."""
    torch.manual_seed(0)
    guard = {"enabled": True, "chance_factor": 1.5, "min_feature_norm": 1e9, "patience": 1}
    with pytest.raises(CollapseError) as exc:
        train(build_model(SMALL, 4), _data(), _stage(epochs=2), objective=obj(), seed=0, device=CPU, guard=guard,
              stage_name="pretrain[ce]")
    msg = str(exc.value)
    assert "collapsed at epoch 1" in msg and "pretrain.lr" in msg and "lff" not in msg.lower()
    assert msg.endswith(obj().collapse_advice()) and "Lower the learning rate" in msg


def test_collapse_guard_reports_vanished_when_not_at_chance():
    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    guard = {"enabled": True, "chance_factor": -1.0, "min_feature_norm": 1e9, "patience": 1}
    with pytest.raises(CollapseError, match="vanished"):
        train(model, _data(), _stage(epochs=2), objective=obj("lff", LFF), seed=0, device=CPU, guard=guard)


def test_collapse_guard_uses_the_objectives_own_check():
    torch.manual_seed(0)
    guard = {"enabled": True, "chance_factor": -1.0, "min_feature_norm": 0.0, "patience": 1}
    # gamma 0.999: a barely trained 4-class model never reaches p >= gamma anywhere
    with pytest.raises(CollapseError, match="ssod.gamma"):
        train(build_model(SMALL, 4), _data(), _stage(epochs=1), objective=obj("ssod", {"gamma": 0.999}), seed=0,
              device=CPU, guard=guard)


def test_collapse_guard_at_last_epoch_with_patience_left():
    torch.manual_seed(0)
    guard = {"enabled": True, "chance_factor": 1.5, "min_feature_norm": 1e9, "patience": 5}
    with pytest.raises(CollapseError, match="epoch 2"):
        train(build_model(SMALL, 4), _data(), _stage(epochs=2), objective=obj(), seed=0, device=CPU, guard=guard)


def test_collapse_guard_disabled_does_not_raise():
    torch.manual_seed(0)
    guard = {"enabled": False, "min_feature_norm": 1e9, "patience": 1}
    hist = train(build_model(SMALL, 4), _data(), _stage(epochs=1), objective=obj("lff", LFF), seed=0, device=CPU,
                 guard=guard)
    assert len(hist) == 1


def test_nonfinite_loss_raises_collapse():
    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(CollapseError, match="lr="):
        train(model, _data(), _stage(epochs=1), objective=obj(), seed=0, device=CPU, guard=NO_GUARD)


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY, 5)
    train(model, _data(32, k=5), _stage(epochs=1), objective=obj(classes=5, dim=16), seed=0, device=CPU,
          guard=NO_GUARD)  # non-trivial BN stats
    model.eval()
    path = tmp_path / "ck" / "model.pt"
    meta = {"model": TINY, "num_classes": 5, "classes": list("abcde"), "seed": 0}
    save_checkpoint(path, model, meta)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt", "model.pt.sha256.json"]  # + its manifest
    loaded, meta_back = load_checkpoint(path)
    loaded.eval()
    assert meta_back == meta
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_bytes_depend_only_on_content_and_keep_objective_modules(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY, 2)
    o = obj("ssod", {"gamma": 0.9}, classes=2, dim=16)
    meta = {"model": TINY, "num_classes": 2, "classes": ["a", "b"],
            "objective": {"name": "ssod", "params": dict(o.params)}}
    save_checkpoint(tmp_path / "a.pt", model, meta, o)
    save_checkpoint(tmp_path / "other_name.pt", model, meta, o)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
    loaded, meta_back, o2 = load_checkpoint(tmp_path / "a.pt", with_objective=True)
    assert o2.name == "ssod" and o2.params == o.params
    for a, b in zip(o.modules.state_dict().values(), o2.modules.state_dict().values()):
        assert torch.equal(a, b)
    plain = {"model": TINY, "num_classes": 2, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "plain.pt", model, plain)
    assert load_checkpoint(tmp_path / "plain.pt", with_objective=True)[2] is None


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(LffoodError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(LffoodError, match="junk.pt"):
        load_checkpoint(junk)


# ----------------------------------------------------------------------------- extraction
def test_extract_split_matches_model():
    from lffood.extraction import extract_split
    from lffood.local import local_gt_prob

    torch.manual_seed(0)
    model = build_model(TINY, 4)
    data = _data(10, k=4, size=16)
    out = extract_split(model, data, batch_size=4, device=CPU, role="id_test")
    assert not model.training
    x, y = data.batch(torch.arange(10))
    with torch.no_grad():
        logits, pooled, fmap = model(x, return_features=True)
    assert out["logits"].shape == (10, 4) and out["features"].shape == (10, 16)
    assert out["local_norms"].shape == (10, 64) and out["local_gt_prob"].shape == (10, 64)
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["features"], pooled.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["labels"], y.numpy())
    np.testing.assert_array_equal(out["preds"], out["logits"].argmax(1))
    np.testing.assert_allclose(out["local_norms"], fmap.flatten(2).norm(dim=1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["local_gt_prob"], local_gt_prob(fmap, model.head.weight, model.head.bias, y).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    no_gt = extract_split(model, data, batch_size=7, device=CPU, role="ood")
    assert "local_gt_prob" not in no_gt
    np.testing.assert_allclose(no_gt["logits"], out["logits"], rtol=1e-5, atol=1e-6)


def test_region_vectors_are_unit_vectors_even_past_float16_range():
    """MODE's region vectors are stored L2-normalised in float16: exact directions for CSD, and no
    overflow to infinity when a diverged model's features exceed float16's 65504."""
    from lffood.extraction import extract_split
    from lffood.local import multiscale_vectors

    torch.manual_seed(0)
    model = build_model(TINY, 4)
    data = _data(6, k=4, size=16)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(30.0)  # features of order 1e6 and more
    out = extract_split(model, data, batch_size=4, device=CPU, role="ood", requests={"multiscale": True})
    ms = out["multiscale"]
    assert ms.dtype == np.float16 and np.isfinite(ms).all()
    np.testing.assert_allclose(np.linalg.norm(ms.astype(np.float32), axis=-1), 1.0, atol=2e-3)
    with torch.no_grad():
        _, _, fmap = model(data.batch(torch.arange(6))[0], return_features=True)
    ref = torch.nn.functional.normalize(multiscale_vectors(fmap), dim=-1).numpy()
    assert np.abs(out["features"]).max() > 65504
    np.testing.assert_allclose(ms.astype(np.float32), ref, atol=1e-3)


# ----------------------------------------------------------------------------- resume
class _Killed(Exception):
    pass


def test_resume_after_a_crash_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    from lffood.checkpoint import ResumeFile

    monitors = []

    def run(resume=None, kill_at=None, objective="lff"):
        torch.manual_seed(0)
        model = build_model(SMALL, 4)
        o = obj(objective, LFF if objective == "lff" else {"gamma": 0.6})
        monitors.append(LocalMonitor())

        def progress(row):
            if row["epoch"] == kill_at:
                raise _Killed

        try:
            hist = train(model, _data(), _stage(epochs=4, schedule={"type": "step", "milestones": [2], "gamma": 0.1}),
                         objective=o, seed=0, device=CPU, guard=NO_GUARD, hooks=[monitors[-1], OnEpoch(progress)],
                         resume=resume)
        except _Killed:
            return None, None, None
        return model, o, hist

    ref_model, ref_obj, ref_hist = run()
    ref_monitor = monitors[-1].table()
    resume = ResumeFile(tmp_path / "m.resume.pt", "fp-1", max_cost=None)  # written every epoch
    assert run(resume, kill_at=3)[0] is None  # killed during epoch 3: the state after epoch 2 is on disk
    assert resume.load(CPU)["epoch"] == 2
    model, o, hist = run(resume)
    for a, b in zip(ref_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    for key in ("loss", "ce", "acc", "lff", "frac_selected"):
        assert [h[key] for h in hist] == [h[key] for h in ref_hist], key
    # the monitor's epochs before the kill come from the resume state, the others from the rerun
    assert monitors[-1].table().equals(ref_monitor) and list(ref_monitor["epoch"].unique()) == [1, 2, 3, 4]
    # written as often as costs max_cost of the time: with a tiny one only after epoch 1, whatever the
    # machine's speed; the rerun goes on from there to the same weights
    resume = ResumeFile(tmp_path / "c.resume.pt", "fp-cost", max_cost=1e-9)
    assert run(resume, kill_at=4)[0] is None
    assert resume.load(CPU)["epoch"] == 1
    model, _, hist = run(ResumeFile(resume.path, "fp-cost"))
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    for a, b in zip(ref_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    # SSOD: the objective's own module (OOD head) resumes too
    ref_model, ref_obj, _ = run(objective="ssod")
    resume = ResumeFile(tmp_path / "s.resume.pt", "fp-ssod", max_cost=None)
    run(resume, kill_at=2, objective="ssod")
    _, o, _ = run(resume, objective="ssod")
    for a, b in zip(ref_obj.modules.state_dict().values(), o.modules.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_state_is_written_as_often_as_costs_one_percent(tmp_path):
    import time

    from lffood.checkpoint import ResumeFile

    r = ResumeFile(tmp_path / "m.resume.pt", "fp")
    assert r.max_cost == 0.01 and r.due()  # the first epoch's end always writes
    r.save({"epoch": 1})
    assert r.path.exists() and r.last_write[1] > 0  # when it ended and how long it took
    r.last_write = (time.perf_counter(), 1.0)  # a write of 1 s just ended: the next after 100 s of training
    assert not r.due()
    r.last_write = (time.perf_counter() - 101.0, 1.0)
    assert r.due()
    r.max_cost = None  # every epoch
    r.last_write = (time.perf_counter(), 1.0)
    assert r.due()


def test_resume_state_of_another_training_is_ignored(tmp_path, caplog):
    from lffood.checkpoint import ResumeFile

    torch.manual_seed(0)
    resume = ResumeFile(tmp_path / "m.resume.pt", "fingerprint-a")
    resume.save({"epoch": 3, "model": {}, "objective": {}, "optimizer": {}, "scaler": None, "rng": {},
                 "history": [], "collapsed_epochs": 0})
    other = ResumeFile(tmp_path / "m.resume.pt", "fingerprint-b")
    with caplog.at_level("WARNING"):
        hist = train(build_model(SMALL, 4), _data(), _stage(epochs=2), objective=obj(), seed=0, device=CPU,
                     guard=NO_GUARD, resume=other)
    assert [h["epoch"] for h in hist] == [1, 2] and "another training configuration" in caplog.text
    (tmp_path / "torn.resume.pt").write_bytes(b"\x00" * 10)
    assert ResumeFile(tmp_path / "torn.resume.pt", "x").load(CPU) is None


# ----------------------------------------------------------------------------- host synchronisations
@pytest.mark.parametrize("name,params", [("ce", {}), ("lff", LFF), ("logitnorm", {}), ("ssod", {"gamma": 0.6}),
                                         ("alpa", {"dim": 4})])
def test_training_step_makes_no_host_synchronisation(name, params):
    """Per-epoch statistics stay on the device and are read once per epoch; every objective uses
    masked reductions: the number of value reads to the host does not grow with the number of steps."""
    from lffood.bench import syncs_per_step

    def epoch(steps):
        torch.manual_seed(0)
        train(build_model(SMALL, 4), _data(n=8 * steps), _stage(epochs=1, batch_size=8), objective=obj(name, params),
              seed=0, device=CPU, guard=NO_GUARD, hooks=[LocalMonitor()])

    assert syncs_per_step(epoch, 2, 5) == 0


def test_sync_counter_counts_value_reads():
    from lffood.bench import SyncCounter, syncs_per_step

    def loop(steps):
        t = torch.ones(3)
        for _ in range(steps):
            float(t.sum())  # one read per step
            t.tolist()      # and another

    assert syncs_per_step(loop, 2, 5) == 2
    with SyncCounter() as c:
        torch.zeros(1).item()
        bool(torch.tensor(True))
    assert c.calls == {"item": 1, "__bool__": 1}


def test_compile_runs_the_forward_through_torch_compile(monkeypatch):
    compiled = []

    def fake_compile(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = build_model(SMALL, 4)
    train(model, _data(), _stage(epochs=1), objective=obj(), seed=0, device=CPU, guard=NO_GUARD, compile=True)
    assert compiled == [model]
    train(build_model(SMALL, 4), _data(), _stage(epochs=1), objective=obj(), seed=0, device=CPU, guard=NO_GUARD)
    assert len(compiled) == 1


def test_sync_counter_leaves_tensor_as_it_was():
    from lffood.bench import SyncCounter

    before = {m: torch.Tensor.__dict__.get(m) for m in SyncCounter.METHODS}
    with SyncCounter():
        pass
    assert {m: torch.Tensor.__dict__.get(m) for m in SyncCounter.METHODS} == before


# ----------------------------------------------------------------------------- freshly initialised modules
def test_param_groups_give_the_fresh_modules_their_own_rate():
    """SSOD's OOD head (not in the parent checkpoint) in a group of its own at ssod.new_module_lr; the
    network at the stage's rate; the schedule scales both alike."""
    from lffood.training import param_groups

    torch.manual_seed(0)
    model = build_model(SMALL, 4)
    o = obj("ssod", {"gamma": 0.6, "new_module_lr": 0.5})
    st = _stage(lr=0.01)
    opt = build_optimizer(param_groups(model, o, st), st)
    net, new = opt.param_groups
    assert [id(p) for p in new["params"]] == [id(p) for p in o.modules["ood_head"].parameters()]
    assert [id(p) for p in net["params"]] == [id(p) for p in model.parameters()]
    assert (net["lr"], new["lr"], new["lr_scale"]) == (0.01, 0.5, pytest.approx(50.0))
    assert new["momentum"] == net["momentum"] == 0.9 and new["weight_decay"] == net["weight_decay"] == 1e-4
    hist = train(model, _data(), _stage(epochs=2, lr=0.01, batch_size=8, schedule={"type": "step", "milestones": [1],
                                                                                   "gamma": 0.1}),
                 objective=o, seed=0, device=CPU, guard=NO_GUARD)
    assert [h["lr"] for h in hist] == pytest.approx([0.01, 0.001])
    assert [h["new_modules_lr"] for h in hist] == pytest.approx([0.5, 0.05])
    assert all(h["new_modules_change"] > 0 for h in hist)


@pytest.mark.parametrize("name,params", [("ce", {}), ("lff", LFF), ("ssod", {}), ("alpa", {"dim": 4})])
def test_without_new_module_lr_one_group_at_the_stage_rate(name, params):
    """The embedded benchmark's variants set no new_module_lr: one group, as before the key existed."""
    from lffood.training import param_groups

    model = build_model(SMALL, 4)
    o = obj(name, params)
    groups = param_groups(model, o, _stage())
    assert len(groups) == 1 and "lr" not in groups[0]
    assert len(groups[0]["params"]) == len(list(model.parameters())) + len(list(o.modules.parameters()))


def _probe_objective():
    """A toy objective with a freshly initialised linear probe on the pooled features."""
    from lffood.objectives.base import new_module_lr_schema

    @register("toy_probe")
    class ToyProbe(Objective):
        params_schema = {"new_module_lr": new_module_lr_schema("the probe")}
        stats = {"probe": "CE of the probe"}
        own_loss = "probe"

        def build_modules(self, feature_dim, num_classes):
            return {"probe": torch.nn.Linear(feature_dim, num_classes)}

        def loss(self, out, targets):
            ce = torch.nn.functional.cross_entropy(out.logits, targets)
            probe = torch.nn.functional.cross_entropy(self.modules["probe"](out.pooled.float()), targets)
            return ce + probe, {"probe": probe.detach() * targets.shape[0]}

    return ToyProbe


GUARD_NEW = {"enabled": True, "chance_factor": -1.0, "min_feature_norm": 0.0, "patience": 2}


def test_guard_flags_fresh_modules_that_do_not_learn():
    """A probe at learning rate 0 never leaves its initialisation: the guard stops the run and names the key."""
    _probe_objective()
    try:
        torch.manual_seed(0)
        o = obj("toy_probe", {"new_module_lr": 0.0})  # 0 bypasses the schema (exclusiveMinimum 0) on purpose
        with pytest.raises(CollapseError) as exc:
            train(build_model(SMALL, 4), _data(), _stage(epochs=3, batch_size=8), objective=o, seed=0, device=CPU,
                  guard=GUARD_NEW, stage_name="finetune[probe]")
        msg = str(exc.value)
        assert "toy_probe.new_module_lr" in msg and "probe" in msg and "moved 0% from their initialisation" in msg
        assert "epoch 2" in msg  # patience 2
        # with the guard off the run ends, and the log shows the probe did not move
        hist = train(build_model(SMALL, 4), _data(), _stage(epochs=1, batch_size=8), objective=o, seed=0,
                     device=CPU, guard={**GUARD_NEW, "enabled": False})
        assert hist[0]["new_modules_change"] == 0.0 and hist[0]["new_modules_lr"] == 0.0
    finally:
        unregister("toy_probe")


def test_guard_passes_fresh_modules_that_learn(caplog):
    _probe_objective()
    try:
        torch.manual_seed(0)
        o = obj("toy_probe", {"new_module_lr": 0.05})
        with caplog.at_level("INFO", logger="lffood.training"):
            hist = train(build_model(SMALL, 4), _data(), _stage(epochs=3, batch_size=8), objective=o, seed=0,
                         device=CPU, guard=GUARD_NEW)
        assert len(hist) == 3 and all(h["new_modules_change"] > 0.01 for h in hist)
        assert "new modules (probe) lr 0.05 moved" in caplog.text and "probe 1x epoch 1" in caplog.text
        # a stricter threshold (guard.min_new_module_change) than the probe's move stops it
        torch.manual_seed(0)
        with pytest.raises(CollapseError, match="min_new_module_change"):
            train(build_model(SMALL, 4), _data(), _stage(epochs=2, batch_size=8), objective=obj(
                  "toy_probe", {"new_module_lr": 0.05}), seed=0, device=CPU,
                  guard={**GUARD_NEW, "min_new_module_change": 1e6})
    finally:
        unregister("toy_probe")


def test_the_learned_check_survives_a_resume(tmp_path):
    """The change is measured from the seed's initialisation also after a resume (the snapshot is taken
    before the resumed state loads): an interrupted run logs what an uninterrupted one does."""
    from lffood.checkpoint import ResumeFile

    def run(resume=None, kill_at=None):
        torch.manual_seed(0)

        def progress(row):
            if row["epoch"] == kill_at:
                raise _Killed

        try:
            return train(build_model(SMALL, 4), _data(), _stage(epochs=3, batch_size=8),
                         objective=obj("ssod", {"gamma": 0.6, "new_module_lr": 0.2}), seed=0, device=CPU,
                         guard=NO_GUARD, hooks=[OnEpoch(progress)], resume=resume)
        except _Killed:
            return None

    whole = run()
    state = ResumeFile(tmp_path / "m.resume.pt", "fp")
    assert run(state, kill_at=2) is None  # the state after epoch 1 is on disk
    again = run(state)
    assert [h["new_modules_change"] for h in again] == pytest.approx([h["new_modules_change"] for h in whole])
    assert whole[-1]["new_modules_change"] > whole[0]["new_modules_change"] > 0


def test_generic_objective_hooks_epoch_start_transform_and_frozen_backbone():
    """The loop's generic hooks: on_epoch_start sees every epoch, transform_batch's output is what the
    network and the loss see, and freeze_backbone trains the head alone with the network in eval mode."""
    import torch

    from lffood.models import build_model
    from lffood.objectives.base import Objective
    from lffood.training import train

    class Probe(Objective):
        name = "probe"
        freeze_backbone = True

        def __init__(self):
            super().__init__({}, feature_dim=16, num_classes=3)
            self.epochs, self.batch_sizes = [], []

        def on_epoch_start(self, epoch, epochs):
            self.epochs.append((epoch, epochs))

        def transform_batch(self, x, y, gen):
            return torch.cat([x, x.flip(3)]), torch.cat([y, y])

        def loss(self, out, targets):
            self.batch_sizes.append(int(out.logits.shape[0]))
            return torch.nn.functional.cross_entropy(out.logits, targets), {}

    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "blocks": [1], "widths": [16]}, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _data(n=24, k=3)
    stage = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "epochs": 2, "batch_size": 8,
             "schedule": {"type": "constant"}, "augment": {"crop_padding": 0, "hflip": False, "color_jitter": 0.0}}
    probe = Probe()
    train(model, data, stage, objective=probe, seed=0, device=torch.device("cpu"), guard={"enabled": False})
    assert probe.epochs == [(0, 2), (1, 2)]
    assert probe.batch_sizes == [16] * 6
    after = model.state_dict()
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved and all(k.startswith("head.") for k in moved), moved  # BN running statistics included
