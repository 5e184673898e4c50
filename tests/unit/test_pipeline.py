"""The scoring and metrics stages on a tiny hand-made feature file (no network involved)."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp

from lffood import h5schema, metrics, pipeline

K, C, L = 3, 3, 4


def _split(feats, labels, role):
    rng = np.random.default_rng(0)
    logits = feats.astype(np.float32)  # identity head
    d = {"logits": logits, "features": feats.astype(np.float32), "labels": labels.astype(np.int64),
         "preds": logits.argmax(1).astype(np.int64), "local_norms": rng.uniform(size=(len(feats), L)).astype(np.float32)}
    if role != "ood":
        d["local_gt_prob"] = rng.uniform(size=(len(feats), L)).astype(np.float32)
    return d


@pytest.fixture
def features(tmp_path):
    rng = np.random.default_rng(1)

    def id_feats(n):
        lab = rng.integers(0, K, n)
        return rng.uniform(0, 0.5, (n, C)) + 5 * np.eye(K)[lab], lab

    tr, trl = id_feats(30)
    te, tel = id_feats(20)
    tel[:4] = (tel[:4] + 1) % K  # 4 of 20 misclassified -> accuracy 0.8
    far = rng.uniform(0, 0.5, (15, C))
    path = tmp_path / "features.h5"
    h5schema.write_features(path, head_weight=np.eye(K), head_bias=np.zeros(K),
                            splits={"train": _split(tr, trl, "id_train"), "test": _split(te, tel, "id_test"),
                                    "far": _split(far, np.full(15, -1), "ood")},
                            roles={"train": "id_train", "test": "id_test", "far": "ood"}, attrs={"benchmark": "toy"})
    return path, te, far


def test_run_scoring_and_metrics(features, tmp_path):
    path, te, far = features
    score_paths = {}
    with pytest.raises(ValueError, match="stats_path"):  # scoring never fits statistics itself
        pipeline.run_scoring(str(path), "react", {}, str(tmp_path / "no.h5"))
    stats = tmp_path / "stats_react.h5"
    fitted = pipeline.run_fit_stats(str(path), "react", {}, str(stats))
    assert h5schema.read_stats(stats, scorer="react")[0]["threshold"] == pytest.approx(float(fitted["threshold"]))
    for name in ("msp", "energy", "react"):
        out = tmp_path / f"scores_{name}.h5"
        scores = pipeline.run_scoring(str(path), name, {}, str(out), stats_path=str(stats) if name == "react" else None)
        assert set(scores) == {"test", "far"}  # the ID training split is not scored
        score_paths[name] = str(out)
    energy, attrs = h5schema.read_scores(score_paths["energy"])
    np.testing.assert_allclose(energy["test"], logsumexp(te.astype(np.float32).astype(np.float64), axis=1), rtol=1e-6)
    assert attrs["params"] == {"temperature": 1.0}
    _, react_attrs = h5schema.read_scores(score_paths["react"])
    assert react_attrs["params"] == {"percentile": 90.0, "threshold": None, "temperature": 1.0}

    df = pipeline.run_metrics(str(path), score_paths, str(tmp_path / "m.csv"), {"variant": "lff", "seed": 0})
    assert len(df) == 3 and set(df["ood_set"]) == {"far"}
    assert (df["variant"] == "lff").all() and (df["seed"] == 0).all()
    assert df["id_acc"].tolist() == pytest.approx([0.8] * 3)
    row = df.set_index("scorer").loc["energy"]
    expected = metrics.ood_metrics(energy["test"], energy["far"])
    for m, v in expected.items():
        assert row[m] == pytest.approx(v)
    assert (df["auroc"] > 0.9).all()
    back = pd.read_csv(tmp_path / "m.csv")
    assert list(back.columns) == list(df.columns)


def test_split_names():
    assert pipeline.split_names({"dataset": {"ood_sets": ["a", "b"]}}) == ["train", "test", "a", "b"]


def test_two_runs_of_the_chain_are_identical(tmp_path):
    """Determinism: the chain (CE training, LFF fine-tuning, extraction, statistics, scoring, metrics)
    run twice from scratch gives byte-identical checkpoints and metrics."""
    from lffood.config import validate_config
    from lffood.variants import training_spec

    from conftest import MICRO, SCHEMA
    import yaml

    cfg = yaml.safe_load(MICRO.read_text())
    b = cfg["benchmarks"]["micro"]
    b["variants"] = {v: b["variants"][v] for v in ("ce", "lff")}
    b["sweeps"] = []
    bench = validate_config(cfg, SCHEMA)["benchmarks"]["micro"]
    splits = {s: str(tmp_path / f"{s}.npz") for s in pipeline.split_names(bench)}
    pipeline.prepare_embedded(bench, splits)  # the generator's determinism is tested in test_data.py
    outs = []
    for run in ("a", "b"):
        d = tmp_path / run
        for v, parent in (("ce", None), ("lff", str(d / "ce.pt"))):
            pipeline.run_training(training_spec(bench, v), variant=v, seed=0, train_path=splits["train"],
                                  ckpt_out=str(d / f"{v}.pt"), history_out=str(d / f"{v}.csv"), device_name="cpu",
                                  monitor_out=str(d / f"{v}_monitor.csv"), parent_ckpt=parent)
        pipeline.run_extraction(bench["extraction"], checkpoint=str(d / "lff.pt"), split_paths=splits,
                                out=str(d / "lff.h5"), attrs={}, device_name="cpu")
        pipeline.run_fit_stats(str(d / "lff.h5"), "react", {}, str(d / "react_stats.h5"))
        scores = {}
        for s, stats in (("react", str(d / "react_stats.h5")), ("csd", None), ("energy", None)):
            pipeline.run_scoring(str(d / "lff.h5"), s, bench["scorers"]["params"].get(s, {}), str(d / f"{s}.h5"),
                                 stats_path=stats)
            scores[s] = str(d / f"{s}.h5")
        pipeline.run_metrics(str(d / "lff.h5"), scores, str(d / "metrics.csv"), {"variant": "lff", "seed": 0})
        outs.append(d)
    a, b_ = outs
    for name in ("ce.pt", "lff.pt", "metrics.csv", "ce_monitor.csv", "lff_monitor.csv"):
        assert (a / name).read_bytes() == (b_ / name).read_bytes(), name
    fa, fb = h5schema.read_split(a / "lff.h5", "far"), h5schema.read_split(b_ / "lff.h5", "far")
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k])
