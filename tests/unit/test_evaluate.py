"""lffood.evaluate: the one-call API, detectors, model wrapping and ``lffood evaluate`` give the workflow's numbers."""

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lffood import h5schema, metrics, pipeline
from lffood.evaluate import (Detector, ImageSource, as_feature_set, detector, evaluate, extract, score_all,
                             wrap)
from lffood.evaluate_cli import add_parser
from lffood.models import build_model
from lffood.scorers import FeatureSet, Head, build_scorer
from lffood.scorers.logit_based import energy_score

REPO = Path(__file__).resolve().parents[2]
K, C, L = 3, 8, 4
#: scorers the workflow fits and scores from a feature file, with parameters fit for 60 training rows
SCORERS = ["msp", "mahalanobis", "energy", "vim", "knn", "dice", "react", "dice_react", "line", "csd"]
PARAMS = {"knn": {"k": 5}, "csd": {"k": 5}}


def _arrays(rng, n, role):
    """One split of a toy feature file: class-shifted non-negative features, head = [I | 0]."""
    labels = rng.integers(0, K, n) if role != "ood" else np.full(n, -1)
    shift = np.eye(K, C)[np.maximum(labels, 0)] * 0.8 if role != "ood" else 0.0  # overlapping: no metric at 0 or 1
    feats = (rng.uniform(0, 1.3 if role == "ood" else 1.0, (n, C)) + shift).astype(np.float32)
    logits = (feats @ np.eye(K, C).T.astype(np.float32) + np.float32(0.1)).astype(np.float32)
    multiscale = rng.normal(size=(n, 6, C)).astype(np.float16)
    d = {"logits": logits, "features": feats, "labels": labels.astype(np.int64), "preds": logits.argmax(1),
         "local_norms": rng.uniform(size=(n, L)).astype(np.float32), "multiscale": multiscale}
    if role != "ood":
        d["local_gt_prob"] = rng.uniform(size=(n, L)).astype(np.float32)
    return d


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A feature file (as extraction writes it) and the same arrays in memory."""
    rng = np.random.default_rng(0)
    roles = {"train": "id_train", "test": "id_test", "far": "ood", "near": "ood"}
    splits = {name: _arrays(rng, n, role) for (name, role), n in zip(roles.items(), (60, 30, 25, 20))}
    head = Head(np.eye(K, C, dtype=np.float32), np.full(K, 0.1, dtype=np.float32))
    path = tmp_path_factory.mktemp("toy") / "features.h5"
    h5schema.write_features(path, head_weight=head.weight, head_bias=head.bias, splits=splits, roles=roles,
                            attrs={"benchmark": "toy"})
    return path, splits, head


def _workflow_metrics(path, tmp_path):
    """The workflow's path: run_fit_stats, run_scoring and run_metrics on the feature file."""
    score_paths = {}
    for name in SCORERS:
        sc = build_scorer(name, PARAMS.get(name))
        stats = None
        if sc.needs_fit:
            stats = str(tmp_path / f"stats_{name}.h5")
            pipeline.run_fit_stats(str(path), name, PARAMS.get(name, {}), stats)
        score_paths[name] = str(tmp_path / f"scores_{name}.h5")
        pipeline.run_scoring(str(path), name, PARAMS.get(name, {}), score_paths[name], stats_path=stats)
    labels = {"benchmark": "toy", "variant": "v", "seed": 0}
    df = pipeline.run_metrics(str(path), score_paths, str(tmp_path / "metrics.csv"), labels)
    return df.drop(columns=list(labels))


def _feature_sets(splits):
    keep = ("logits", "features", "labels", "multiscale")
    return {name: {k: v for k, v in d.items() if k in keep} for name, d in splits.items()}


def _same_rows(ours: pd.DataFrame, ref: pd.DataFrame):
    cols = ["scorer", "ood_set", "auroc", "fpr95", "aupr_in", "aupr_out", "id_acc"]
    key = ["scorer", "ood_set"]
    a, b = ours[cols].sort_values(key).reset_index(drop=True), ref[cols].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-12)


def test_arrays_give_the_workflows_metrics(toy, tmp_path):
    path, splits, head = toy
    fs = _feature_sets(splits)
    table = evaluate(id_train=fs["train"], id_test=fs["test"], ood={"far": fs["far"], "near": fs["near"]},
                     head=head, scorers=SCORERS, params=PARAMS)
    assert list(table.columns) == ["scorer", "ood_set", "auroc", "fpr95", "aupr_in", "aupr_out", "id_acc"]
    assert table.attrs["skipped"] == {}
    assert len(table) == len(SCORERS) * 2
    _same_rows(table, _workflow_metrics(path, tmp_path))
    # the metric values are lffood.metrics' (one implementation): recompute one row by hand
    e_test, e_far = (energy_score(splits[s]["logits"]) for s in ("test", "far"))
    row = table[(table.scorer == "energy") & (table.ood_set == "far")].iloc[0]
    assert row.auroc == metrics.auroc(e_test, e_far) and row.fpr95 == metrics.fpr_at_tpr(e_test, e_far)
    assert row.id_acc == pytest.approx(np.mean(splits["test"]["preds"] == splits["test"]["labels"]))


def test_default_scorers_skip_what_the_arrays_lack(toy):
    _, splits, head = toy
    fs = {n: {k: v for k, v in d.items() if k in ("logits", "features", "labels")} for n, d in splits.items()}
    fs["test"].pop("labels")
    table = evaluate(id_train=fs["train"], id_test=fs["test"], ood={"far": fs["far"]}, head=head,
                     params={"knn": {"k": 5}})
    skipped = table.attrs["skipped"]
    assert "multiscale" in skipped["csd"] and "needs the network" in skipped["odin"]
    assert "block_norms" in skipped["featurenorm"] and "ssd_plus" in skipped["ssd"]
    assert {"msp", "energy", "vim", "knn", "react", "mahalanobis"} <= set(table.scorer)
    assert "id_acc" not in table.columns  # no ID test labels


def _cli(*argv):
    p = argparse.ArgumentParser(prog="lffood")
    add_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(["evaluate", *map(str, argv)])
    return args.fn(args)


def test_cli_on_a_feature_file_and_on_npz_arrays(toy, tmp_path, capsys):
    path, splits, head = toy
    ref = _workflow_metrics(path, tmp_path)
    params = '{"knn": {"k": 5}, "csd": {"k": 5}}'
    assert _cli(path, "--scorers", *SCORERS, "--params", params, "--out", tmp_path / "a.csv") == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "energy" in out and "percent" in out
    _same_rows(pd.read_csv(tmp_path / "a.csv"), ref)
    fs = _feature_sets(splits)
    for name, d in fs.items():
        extra = {"head_weight": head.weight, "head_bias": head.bias} if name == "train" else {}
        np.savez(tmp_path / f"{name}.npz", **d, **extra)
    assert _cli("--train", tmp_path / "train.npz", "--test", tmp_path / "test.npz", "--ood",
                f"far={tmp_path / 'far.npz'}", f"near={tmp_path / 'near.npz'}", "--scorers", *SCORERS,
                "--params", params, "--out", tmp_path / "b.csv") == 0
    _same_rows(pd.read_csv(tmp_path / "b.csv"), ref)
    # errors in one line, exit 1
    assert _cli("--train", tmp_path / "train.npz") == 1
    assert "missing: --test --ood" in capsys.readouterr().err
    assert _cli(path, "--scorers", "nope") == 1
    assert "unknown scorer 'nope'" in capsys.readouterr().err
    far = fs["far"]
    np.savez(tmp_path / "bad.npz", logits=far["logits"], features=far["features"], featurs=far["features"])
    assert _cli("--train", tmp_path / "train.npz", "--test", tmp_path / "test.npz", "--ood",
                f"bad={tmp_path / 'bad.npz'}") == 1
    assert "unknown name(s) ['featurs']" in capsys.readouterr().err


# ----------------------------------------------------------------------------- models
def _resnet18():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    return resnet18(num_classes=10).eval()


def test_wrap_of_torchvision_resnet18_gives_its_forward():
    net = _resnet18()
    model = wrap(net)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        ref = net(x)
        logits, pooled, z = model(x, return_features=True)
        layer4 = net.layer4(net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
    assert torch.equal(logits, ref)
    torch.testing.assert_close(pooled, layer4.mean(dim=(2, 3)))
    assert torch.equal(z, layer4) and z.shape == (4, 512, 2, 2)
    assert model.head is net.fc and model.feature_dim == 512 and model.num_classes == 10
    assert model.blocks() == [*net.layer1, *net.layer2, *net.layer3, *net.layer4]
    # extraction (the workflow's) through the wrapper: its logits and features
    fs = extract(model, x, role="ood", batch_size=3)
    np.testing.assert_allclose(fs.logits, ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fs.features, pooled.numpy(), rtol=1e-5, atol=1e-6)


def test_wrap_errors_name_the_modules():
    net = _resnet18()
    with pytest.raises(ValueError, match=r"feature_layer 'layer5' is not a module of ResNet.*'layer4'.*\['fc'\]"):
        wrap(net, feature_layer="layer5")
    with pytest.raises(ValueError, match="head 'avgpool' of ResNet is a AdaptiveAvgPool2d, not an nn.Linear"):
        wrap(net, head="avgpool")

    class MaxPooled(nn.Module):  # the head's input is a max pool: the local vectors would not average to it
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).amax(dim=(2, 3)))

    with pytest.raises(ValueError, match="not the global average pool of feature_layer 'conv'"):
        wrap(MaxPooled(), feature_layer="conv")(torch.randn(2, 3, 8, 8), return_features=True)
    logits, pooled, z = wrap(MaxPooled(), feature_layer=None)(torch.randn(2, 3, 8, 8), return_features=True)
    assert z.shape == (2, 4, 1, 1) and torch.equal(z[:, :, 0, 0], pooled)


def _images(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g) + shift


def test_project_backbone_every_field_and_the_network_scorers():
    torch.manual_seed(0)
    net = build_model({"arch": "resnet", "blocks": [1, 1, 1], "widths": [8, 16, 32]}, 4).eval()
    assert wrap(net) is net  # the project's backbones have the interface already
    train = (_images(40, 1), torch.arange(40) % 4)
    test = (_images(20, 2), torch.arange(20) % 4)
    ood = {"shifted": _images(16, 3, shift=2.0)}
    ev = score_all(net, id_train=train, id_test=test, ood=ood, scorers=["energy", "featurenorm", "csd", "odin"],
                   params={"csd": {"k": 3}}, std=[0.5, 0.5, 0.5], batch_size=8)
    assert ev.skipped == {} and set(ev.scores) == {"energy", "featurenorm", "csd", "odin"}
    with torch.no_grad():
        np.testing.assert_allclose(ev.scores["energy"]["test"], energy_score(net(test[0]).numpy()), rtol=1e-5)
    assert ev.id_acc == pytest.approx((net(test[0]).argmax(1) == test[1]).float().mean().item())
    table = ev.table()
    assert len(table) == 4 and set(table.ood_set) == {"shifted"}
    # without std ODIN is skipped with its reason; a wrapped model without blocks skips FeatureNorm
    t2 = evaluate(wrap(_resnet18(), blocks=None), id_train=(_images(12, 1), torch.arange(12) % 10),
                  id_test=_images(8, 2), ood=ood, scorers=["msp", "odin", "featurenorm"])
    assert "std" in t2.attrs["skipped"]["odin"] and "blocks" in t2.attrs["skipped"]["featurenorm"]
    assert list(t2.scorer) == ["msp"]


def test_data_sources_agree_and_labels_are_optional():
    torch.manual_seed(0)
    net = build_model({"arch": "resnet", "blocks": [1, 1, 1], "widths": [8, 16, 32]}, 4).eval()
    x, y = _images(20, 5), torch.arange(20) % 4
    from_tensor = extract(net, (x, y), role="id_test", batch_size=6)
    ds = torch.utils.data.TensorDataset(x, y)
    from_dataset = extract(net, ds, role="id_test", batch_size=7)
    from_loader = extract(net, torch.utils.data.DataLoader(ds, batch_size=5), role="id_test")
    from_numpy = extract(net, x.numpy(), role="id_test")
    for other in (from_dataset, from_loader, from_numpy):
        np.testing.assert_allclose(other.logits, from_tensor.logits, rtol=1e-5, atol=1e-6)
    assert np.array_equal(from_loader.labels, y.numpy()) and from_numpy.labels is None
    # Mahalanobis without ID training labels: skipped with its own reason
    table = evaluate(net, id_train=x, id_test=x, ood={"o": _images(10, 6)}, scorers=["mahalanobis", "msp"])
    assert "needs the labels" in table.attrs["skipped"]["mahalanobis"] and list(table.scorer) == ["msp"]
    with pytest.raises(ValueError, match=r"expected \(N, C, H, W\)"):
        ImageSource(torch.zeros(3, 16, 16))


def test_detectors_are_the_registered_scorers(toy):
    _, splits, head = toy
    fs = _feature_sets(splits)
    det = detector("react", percentile=80).fit(fs["train"], head)
    ref = build_scorer("react", {"percentile": 80}).fit(as_feature_set(fs["train"]), head)
    np.testing.assert_array_equal(det.score(fs["far"]), ref.score(as_feature_set(fs["far"])))
    assert det.score(FeatureSet(splits["far"]["logits"], splits["far"]["features"])).dtype == np.float64
    with pytest.raises(RuntimeError, match="call fit"):
        detector("vim").score(fs["far"])
    np.testing.assert_array_equal(detector("energy").score(fs["far"]), energy_score(splits["far"]["logits"]))
    with pytest.raises(KeyError, match=r"unknown scorer 'energie'; registered: \[.*'energy'"):
        detector("energie")
    with pytest.raises(ValueError, match="unknown parameter"):
        detector("react", percentil=80)
    with pytest.raises(ValueError, match="needs the network"):
        detector("odin")


def test_detector_on_a_model_scores_batches_as_evaluate_does():
    torch.manual_seed(0)
    net = build_model({"arch": "resnet", "blocks": [1, 1, 1], "widths": [8, 16, 32]}, 4).eval()
    train, test = (_images(30, 1), torch.arange(30) % 4), _images(12, 2)
    det = Detector("knn", model=net, k=4).fit(train)
    batched = np.concatenate([det.score(test[i:i + 5]) for i in range(0, 12, 5)])
    ev = score_all(net, id_train=train, id_test=test, ood={"o": _images(6, 3)}, scorers=["knn"],
                   params={"knn": {"k": 4}})
    np.testing.assert_allclose(batched, ev.scores["knn"]["test"], atol=1e-5)  # float32 convolutions by batch
    odin = detector("odin", model=net, std=[0.5] * 3)
    assert odin.score(test).shape == (12,)
    with pytest.raises(ValueError, match="cannot run on this model: .*multiscale"):
        detector("csd", model=wrap(_resnet18(), feature_layer=None))


def test_the_example_runs_and_prints_a_table():
    script = REPO / "examples" / "evaluate_own_model.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["scorer", "ood_set", "auroc", "fpr95", "aupr_in", "aupr_out", "id_acc"]
    rows = [ln.split() for ln in lines[1:] if ln.split() and ln.split()[1] in ("textures", "far")]
    assert {r[0] for r in rows} >= {"msp", "energy", "knn", "featurenorm", "csd", "odin"}
    assert all(0 <= float(v) <= 1 for r in rows for v in r[2:])
    assert any(ln.startswith("knn detector:") for ln in lines)


def test_the_docs_python_blocks_run():
    """docs/evaluate.md's Python blocks, in order, in one namespace (the included example runs above)."""
    import re

    text = (REPO / "docs" / "evaluate.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "--8<--" not in b]
    assert len(blocks) >= 4
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/evaluate.md", "exec"), namespace)
    table = namespace["table"]  # the last evaluate(...) of the page: precomputed features
    assert set(table.scorer) == {"energy", "react", "vim", "knn", "mahalanobis"} and len(table) == 5
    assert namespace["scores"].shape == (8,)
    assert isinstance(namespace["densenet"], torch.nn.Module)
