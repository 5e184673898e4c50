"""The HDF5 schema: round trips, validation, error messages, atomic writes."""

import json
import os

import h5py
import numpy as np
import pytest

from lffood import h5schema, integrity
from lffood.errors import DataError, SchemaError

K, C, L = 3, 5, 4


def _split(n, role, seed=0, gt=True):
    rng = np.random.default_rng(seed)
    d = {
        "logits": rng.normal(size=(n, K)).astype(np.float32),
        "features": rng.uniform(size=(n, C)).astype(np.float32),
        "labels": (rng.integers(0, K, n) if role != "ood" else np.full(n, -1)).astype(np.int64),
        "preds": rng.integers(0, K, n).astype(np.int64),
        "local_norms": rng.uniform(size=(n, L)).astype(np.float32),
    }
    if gt:
        d["local_gt_prob"] = rng.uniform(size=(n, L)).astype(np.float32)
    return d


def _write(path, splits=None, roles=None, attrs=None):
    splits = splits if splits is not None else {"train": _split(6, "id_train", 0), "test": _split(4, "id_test", 1),
                                                "far": _split(5, "ood", 2, gt=False)}
    roles = roles if roles is not None else {"train": "id_train", "test": "id_test", "far": "ood"}
    w = np.arange(K * C, dtype=np.float32).reshape(K, C)
    b = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    h5schema.write_features(path, head_weight=w, head_bias=b, splits=splits, roles=roles,
                            attrs=attrs if attrs is not None else
                            {"benchmark": "toy", "seed": 3, "variant": "lff", "config": {"a": [1, 2]},
                             "ood_datasets": ["far"]})
    return splits, w, b


def test_features_round_trip(tmp_path):
    path = tmp_path / "f.h5"
    splits, w, b = _write(path)
    assert h5schema.list_splits(path) == {"train": "id_train", "test": "id_test", "far": "ood"}
    for name, fields in splits.items():
        back = h5schema.read_split(path, name)
        assert set(back) == set(fields)
        for field, arr in fields.items():
            assert back[field].dtype == h5schema.FIELDS[field][0]
            np.testing.assert_array_equal(back[field], arr)
    sub = h5schema.read_split(path, "test", ["labels", "logits"])
    assert list(sub) == ["labels", "logits"]
    assert sub["labels"].dtype == np.int64 and sub["logits"].dtype == np.float32
    hw, hb = h5schema.read_head(path)
    assert hw.dtype == np.float32 and hb.dtype == np.float32
    np.testing.assert_array_equal(hw, w)
    np.testing.assert_array_equal(hb, b)
    attrs = h5schema.read_attrs(path)
    assert attrs["kind"] == "features"
    assert attrs["schema_version"] == h5schema.SCHEMA_VERSION
    assert attrs["benchmark"] == "toy" and attrs["variant"] == "lff" and attrs["seed"] == 3
    assert json.loads(attrs["config"]) == {"a": [1, 2]}
    assert json.loads(attrs["ood_datasets"]) == ["far"]
    assert "created" in attrs
    with h5py.File(path, "r") as f:
        assert f["splits/test"].attrs["n"] == 4


def test_dtypes_are_coerced_on_write(tmp_path):
    path = tmp_path / "f.h5"
    sp = _split(3, "id_test")
    sp["logits"] = sp["logits"].astype(np.float64)
    sp["labels"] = sp["labels"].astype(np.int32)
    _write(path, {"test": sp}, {"test": "id_test"})
    back = h5schema.read_split(path, "test")
    assert back["logits"].dtype == np.float32 and back["labels"].dtype == np.int64
    np.testing.assert_array_equal(back["labels"], sp["labels"])


@pytest.mark.parametrize("role", ["id_train", "id_test", "ood"])
@pytest.mark.parametrize("field", ["logits", "features", "labels", "preds", "local_norms"])
def test_missing_required_field(tmp_path, role, field):
    sp = _split(3, role)
    del sp[field]
    with pytest.raises(SchemaError, match=field):
        _write(tmp_path / "f.h5", {"s": sp}, {"s": role})
    assert list(tmp_path.iterdir()) == []


def test_local_gt_prob_required_for_id_only(tmp_path):
    with pytest.raises(SchemaError, match="local_gt_prob"):
        _write(tmp_path / "a.h5", {"s": _split(3, "id_test", gt=False)}, {"s": "id_test"})
    _write(tmp_path / "b.h5", {"s": _split(3, "ood", gt=False)}, {"s": "ood"})
    assert "local_gt_prob" not in h5schema.read_split(tmp_path / "b.h5", "s")


def test_wrong_role_raises(tmp_path):
    with pytest.raises(SchemaError, match="role"):
        _write(tmp_path / "f.h5", {"s": _split(3, "ood")}, {"s": "validation"})


def test_wrong_ndim_raises(tmp_path):
    sp = _split(3, "ood")
    sp["labels"] = sp["labels"][:, None]
    with pytest.raises(SchemaError, match="labels"):
        _write(tmp_path / "f.h5", {"s": sp}, {"s": "ood"})


def test_missing_file_message_names_path(tmp_path):
    path = tmp_path / "nothing" / "here.h5"
    for fn in (h5schema.read_attrs, h5schema.list_splits, h5schema.read_head, h5schema.read_scores):
        with pytest.raises(SchemaError) as exc:
            fn(path)
        assert str(path) in str(exc.value)
    with pytest.raises(SchemaError, match="here.h5"):
        h5schema.read_split(path, "test")
    assert issubclass(SchemaError, DataError)


def test_not_hdf5_file(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_text("not hdf5")
    with pytest.raises(DataError) as exc:  # without an integrity manifest (lffood.integrity): refused first
        h5schema.read_split(path, "test")
    assert str(path) in str(exc.value) and f"snakemake --force {path}" in str(exc.value)


def test_scores_file_read_as_features_raises_schema_error(tmp_path):
    scores = tmp_path / "s.h5"
    h5schema.write_scores(scores, {"test": np.zeros(3)}, scorer="msp", params={}, features_file="f.h5")
    with pytest.raises(SchemaError, match="features"):
        h5schema.read_split(scores, "test")


def test_features_file_read_as_scores_raises_schema_error(tmp_path):
    feats = tmp_path / "f.h5"
    _write(feats)
    with pytest.raises(SchemaError, match="scores"):
        h5schema.read_scores(feats)


def test_wrong_schema_version_raises_schema_error(tmp_path):
    feats = tmp_path / "f.h5"
    _write(feats)
    with h5py.File(feats, "a") as f:
        f.attrs["schema_version"] = 99
    integrity.seal(feats)  # as a writer of that version would have sealed it
    with pytest.raises(SchemaError, match="99"):
        h5schema.list_splits(feats)


def test_wrong_kind_is_rejected_with_schema_error(tmp_path):
    scores = tmp_path / "s.h5"
    h5schema.write_scores(scores, {"test": np.zeros(3)}, scorer="msp", params={}, features_file="f.h5")
    with pytest.raises(SchemaError, match="kind='scores'"):
        h5schema.read_head(scores)


def test_split_without_role_raises_schema_error(tmp_path):
    n = 2
    fields = {"logits": np.zeros((n, 2)), "features": np.zeros((n, 3)), "labels": np.zeros(n), "preds": np.zeros(n),
              "local_norms": np.zeros((n, 4))}
    with pytest.raises(SchemaError, match="no role"):
        h5schema.write_features(tmp_path / "f.h5", head_weight=np.zeros((2, 3)), head_bias=np.zeros(2),
                                splits={"far": fields}, roles={}, attrs={})
    assert not list(tmp_path.iterdir())


def test_unknown_split_and_field(tmp_path):
    path = tmp_path / "f.h5"
    _write(path)
    with pytest.raises(SchemaError, match="nope"):
        h5schema.read_split(path, "nope")
    with pytest.raises(SchemaError, match="local_gt_prob"):
        h5schema.read_split(path, "far", ["local_gt_prob"])


def test_scores_round_trip(tmp_path):
    path = tmp_path / "scores.h5"
    s = {"test": np.array([0.1, 2.5, -3.0]), "far": np.array([1, 2], dtype=np.float32)}
    params = {"percentile": 90, "threshold": None, "temperature": 1.0}
    h5schema.write_scores(path, s, scorer="react", params=params, features_file="feat.h5")
    back, attrs = h5schema.read_scores(path)
    assert set(back) == {"test", "far"}
    for name in s:
        assert back[name].dtype == np.float64
        np.testing.assert_array_equal(back[name], np.asarray(s[name], dtype=np.float64))
    assert attrs["params"] == params
    assert isinstance(attrs["params"], dict)
    assert attrs["scorer"] == "react" and attrs["features_file"] == "feat.h5" and attrs["kind"] == "scores"


def test_non_finite_scores_are_refused_naming_scorer_split_and_model(tmp_path):
    """A scorer that returns NaN or infinity fails in its own job, with the scorer, the split and the
    model's features named, and writes nothing (not later in the metrics with a bare message)."""
    path = tmp_path / "scores.h5"
    s = {"test": np.array([0.1, np.nan, 1.0]), "far": np.array([np.inf, 2.0]), "near": np.array([1.0])}
    with pytest.raises(DataError, match=r"csd gave NaN or infinite scores \(1 of split test, 1 of split far\) "
                                        r"on the model of m/features/lff.h5"):
        h5schema.write_scores(path, s, scorer="csd", params={}, features_file="m/features/lff.h5")
    assert not path.exists()


def test_validation_failure_leaves_no_file(tmp_path):
    sp = _split(4, "id_test")
    sp["preds"] = sp["preds"][:3]  # mismatched row count
    with pytest.raises(SchemaError, match="rows"):
        _write(tmp_path / "f.h5", {"s": sp}, {"s": "id_test"})
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_leaves_no_file_and_no_temp(tmp_path, monkeypatch):
    def boom(value):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5schema, "_json_attr", boom)  # called while the temporary file is open
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path / "f.h5")
    assert list(tmp_path.iterdir()) == []


def test_failure_midway_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "scores.h5"
    h5schema.write_scores(path, {"test": np.ones(2)}, scorer="msp", params={}, features_file="a")
    real_create = h5py.Group.create_dataset

    def failing(self, name, *a, **kw):
        if name.endswith("bad"):
            raise OSError("simulated write error")
        return real_create(self, name, *a, **kw)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError):
        h5schema.write_scores(path, {"ok": np.zeros(2), "bad": np.zeros(2)}, scorer="energy", params={},
                              features_file="b")
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["scores.h5", "scores.h5.sha256.json"]
    back, attrs = h5schema.read_scores(path)
    assert attrs["scorer"] == "msp" and list(back) == ["test"]


def test_file_kind_of_every_kind(tmp_path):
    feats, scores, stats = tmp_path / "f.h5", tmp_path / "s.h5", tmp_path / "st.h5"
    _write(feats)
    h5schema.write_scores(scores, {"test": np.zeros(3)}, scorer="msp", params={}, features_file="f.h5")
    h5schema.write_stats(stats, {"means": np.zeros((2, 3))}, scorer="mahalanobis", params={}, source="f.h5")
    assert [h5schema.file_kind(p) for p in (feats, scores, stats)] == ["features", "scores", "stats"]
    assert set(h5schema.KINDS) == {"features", "scores", "stats"}


def test_file_kind_rejects_non_lffood_files(tmp_path):
    junk, foreign, old = tmp_path / "junk.h5", tmp_path / "foreign.h5", tmp_path / "old.h5"
    junk.write_text("not hdf5")
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    h5schema.write_scores(old, {"test": np.zeros(3)}, scorer="msp", params={}, features_file="f.h5")
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 0
    for path, message in [(junk, "not a readable HDF5 file"), (foreign, "not one of lffood's"),
                          (old, "schema version 0"), (tmp_path / "missing.h5", "not found")]:
        with pytest.raises(SchemaError, match=message) as exc:
            h5schema.file_kind(path)
        assert str(path) in str(exc.value)


def test_describe_datasets_reads_shapes_dtypes_and_scalars(tmp_path, monkeypatch):
    path = tmp_path / "st.h5"
    h5schema.write_stats(path, {"means": np.zeros((2, 3)), "threshold": 1.25, "block": 3}, scorer="react",
                         params={}, source="f.h5")
    info = h5schema.describe_datasets(path, "stats", "stats")
    assert info == {"block": {"shape": (), "dtype": np.dtype(np.int64), "value": 3},
                    "means": {"shape": (2, 3), "dtype": np.dtype(np.float64)},
                    "threshold": {"shape": (), "dtype": np.dtype(np.float64), "value": 1.25}}
    assert type(info["block"]["value"]) is int
    with pytest.raises(SchemaError, match="no group 'splits'"):
        h5schema.describe_datasets(path, "stats", "splits")
    feats = tmp_path / "f.h5"
    _write(feats)

    def no_reading(self, *args):  # shapes come from the metadata: no array is read
        raise AssertionError("array read")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", no_reading)
    info = h5schema.describe_datasets(feats, "features", "splits/far")
    assert {k: v["shape"] for k, v in info.items()} == {"features": (5, C), "labels": (5,), "local_norms": (5, L),
                                                        "logits": (5, K), "preds": (5,)}
