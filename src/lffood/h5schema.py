"""The one HDF5 schema for extracted features and for scores.

Feature file (one per benchmark x seed x model variant)::

    /                      attrs: schema_version, kind="features", benchmark, variant, seed,
                                  checkpoint, checkpoint_sha256, config (JSON), id_dataset,
                                  ood_datasets (JSON list), versions (JSON), created
    /head/weight           float32 (K, C)   linear classifier, so scorers never load the network
    /head/bias             float32 (K,)
    /splits/<name>/        attrs: role in {id_train, id_test, ood}, n
        <field>            one dataset per feature-file field of the split: the registry of
                           lffood.fields (name, dtype, shape, which splits, description), listed
                           below from it; the optional ones only where something asked for them

Score file (one per feature file x scorer)::

    /                      attrs: schema_version, kind="scores", scorer, params (JSON), features_file
    /scores/<name>         float64 (N,)     higher = more in-distribution

Statistics file (one per feature file x scorer that fits ID statistics; see
``lffood.scorers.base``)::

    /                      attrs: schema_version, kind="stats", stats_version, scorer, params (JSON: the
                                  parameters the statistics depend on), source (feature file or
                                  checkpoint it was fitted from), created, plus caller attributes
    /stats/<name>          float64 / int64 array (0-d for scalars), e.g. mahalanobis/means,
                           mahalanobis/precision, vim/residual_basis, featurenorm/block

Files are written atomically (temporary file + rename), each with its integrity manifest
(``<file>.sha256.json``, :mod:`lffood.integrity`: its sha256 and those of the files it was made
from), and every reader verifies the file against it before reading. A file of another schema version is refused
with the command that rebuilds it; version 2 added the optional fields (multiscale, OOD head), version
3 FeatureNorm's block norms (FeatureNorm became a cached-feature scorer), version 4 stores the region
vectors L2-normalised (their float16 overflowed to infinity on a model with features above 65504).

Feature-file fields (lffood.fields, filled in at import)::

FIELDS_TABLE
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from . import objectives, scorers  # noqa: F401  (their modules register their feature-file fields)
from .errors import DataError, SchemaError
from .fields import ROLES, registered_fields, table
from .integrity import sealed_path, verify

__doc__ = __doc__.replace("FIELDS_TABLE", "\n".join("    " + line for line in table().splitlines()))

SCHEMA_VERSION = 4
#: version of the statistics layout (bump when a scorer's stored statistics change meaning)
STATS_VERSION = 1


def __getattr__(name: str):
    """The registry's fields as of now (a field registered later, e.g. by a test, included):
    ``FIELDS`` field -> (dtype, ndim, roles that must have it; empty = optional), ``OPTIONAL_FIELDS``
    (fields that only some models have: scorers name them in ``Scorer.requires``) and
    ``UNCOMPRESSED`` (stored without gzip)."""
    fields = registered_fields().values()
    if name == "FIELDS":
        return {f.name: (f.dtype, f.ndim, f.required_for) for f in fields}
    if name == "OPTIONAL_FIELDS":
        return tuple(f.name for f in fields if f.optional)
    if name == "UNCOMPRESSED":
        return tuple(f.name for f in fields if not f.compressed)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")  # cluster filesystems (NFS/Lustre) reject locks


def _json_attr(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def write_features(path, *, head_weight: np.ndarray, head_bias: np.ndarray,
                   splits: Mapping[str, Mapping[str, np.ndarray]], roles: Mapping[str, str],
                   attrs: Mapping, inputs=None) -> None:
    """Write a feature file. ``splits[name]`` maps field -> array; ``roles[name]`` is its role.
    ``inputs`` (lffood.integrity, default: the ``checkpoint`` attribute with its ``checkpoint_sha256``):
    what the manifest records it was made from."""
    for name, fields in splits.items():
        if name not in roles:
            raise SchemaError(f"split '{name}' has no role; pass roles[{name!r}] in {ROLES}")
        role = roles[name]
        if role not in ROLES:
            raise SchemaError(f"split '{name}': role '{role}' not in {ROLES}")
        known = registered_fields()
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise SchemaError(f"split '{name}': {unknown} are not feature-file fields (lffood.fields); "
                              f"registered: {sorted(known)}")
        n = None
        for field, spec in known.items():
            if role in spec.required_for and field not in fields:
                raise SchemaError(f"split '{name}' ({role}) lacks required field '{field}'")
            if field in fields:
                arr = np.asarray(fields[field])
                if arr.ndim != spec.ndim:
                    raise SchemaError(f"split '{name}' field '{field}': expected {spec.ndim}-D "
                                      f"({', '.join(spec.shape)}), got shape {arr.shape}")
                if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
                    raise SchemaError(f"split '{name}' field '{field}': {np.dtype(spec.dtype).name} values, got "
                                      f"{arr.dtype}")
                if n is not None and arr.shape[0] != n:
                    raise SchemaError(f"split '{name}' field '{field}': {arr.shape[0]} rows, expected {n}")
                n = arr.shape[0]
    if inputs is None:
        inputs = {attrs["checkpoint"]: attrs.get("checkpoint_sha256")} if attrs.get("checkpoint") else {}
    with sealed_path(path, suffix=".h5", inputs=inputs) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["kind"] = "features"
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for key, value in attrs.items():
                f.attrs[key] = value if isinstance(value, (str, int, float, np.integer, np.floating)) else _json_attr(value)
            f.create_dataset("head/weight", data=np.asarray(head_weight, dtype=np.float32))
            f.create_dataset("head/bias", data=np.asarray(head_bias, dtype=np.float32))
            for name, fields in splits.items():
                g = f.create_group(f"splits/{name}")
                g.attrs["role"] = roles[name]
                for field, spec in registered_fields().items():
                    if field in fields:
                        arr = np.asarray(fields[field], dtype=spec.dtype)
                        gzip = arr.size > 1 << 16 and spec.compressed
                        g.create_dataset(field, data=arr, compression="gzip" if gzip else None,
                                         compression_opts=1 if gzip else None)
                        g.attrs["n"] = arr.shape[0]


def _open_hdf5(path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: HDF5 file not found. Rebuild it with snakemake {path}.")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise SchemaError(f"{path}: not a readable HDF5 file ({exc}). Delete it and rebuild it with snakemake.") from exc


def _plain(value):
    """An attribute or scalar as a plain Python value (str for bytes, int/float for numpy scalars)."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


#: the kinds of file the schema defines (root attribute ``kind``)
KINDS = ("features", "scores", "stats")


def file_kind(path) -> str:
    """The kind (one of :data:`KINDS`) of an lffood HDF5 file, read from its ``kind`` and
    ``schema_version`` attributes; SchemaError for a missing or non-HDF5 file, an HDF5 file not
    written by lffood, and one of another schema version."""
    with _open_hdf5(path) as f:
        kind, version = _plain(f.attrs.get("kind")), _plain(f.attrs.get("schema_version"))
    if kind not in KINDS:
        raise SchemaError(f"{path}: an HDF5 file, but not one of lffood's (its attribute 'kind' is {kind!r}; lffood "
                          f"files have one of {list(KINDS)}). Only files written by the lffood workflow can be read; "
                          "their layout is documented in lffood.h5schema.")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"{path}: an lffood '{kind}' file of schema version {version!r}, this lffood reads version "
                          f"{SCHEMA_VERSION}. Delete it and rebuild it with snakemake.")
    return kind


def _open(path, kind: str) -> h5py.File:
    """Open an lffood file of ``kind`` for reading, verified against its integrity manifest first."""
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: HDF5 file not found. Rebuild it with snakemake {path}.")
    verify(path)
    f = _open_hdf5(path)
    version, found = f.attrs.get("schema_version"), f.attrs.get("kind")
    if found != kind or version != SCHEMA_VERSION:
        f.close()
        if found == kind and version is not None:
            raise SchemaError(f"{path}: an lffood '{kind}' file of schema version {version}, written by an older "
                              f"lffood; this version reads version {SCHEMA_VERSION}. Rebuild it: snakemake "
                              f"--forcerun extract (the workflow also reruns extraction by itself, since the "
                              f"schema version is part of the extraction job's parameters).")
        raise SchemaError(f"{path}: expected an lffood '{kind}' file of schema version {SCHEMA_VERSION}, found "
                          f"kind={found!r} version={version!r}. Delete it and rebuild it with snakemake.")
    return f


def read_attrs(path, kind: str = "features") -> dict:
    with _open(path, kind) as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def describe_datasets(path, kind: str, group: str) -> dict[str, dict]:
    """``{name: {"shape", "dtype", "value"}}`` of every dataset under ``group`` (names relative to
    it), read from the metadata without loading the arrays; ``value`` only for 0-d (scalar) datasets.
    For summaries of large files (``lffood inspect``)."""
    with _open(path, kind) as f:
        if group not in f:
            raise SchemaError(f"{path}: no group '{group}' in this '{kind}' file. Delete it and rebuild it with snakemake.")
        out = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                info = out[name] = {"shape": tuple(obj.shape), "dtype": obj.dtype}
                if obj.ndim == 0:
                    info["value"] = _plain(obj[()])

        f[group].visititems(visit)
        return out


def list_splits(path) -> dict[str, str]:
    """``{split name: role}`` in file order."""
    with _open(path, "features") as f:
        return {name: str(g.attrs["role"]) for name, g in f["splits"].items()}


def read_split(path, name: str, fields: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    with _open(path, "features") as f:
        if name not in f["splits"]:
            raise SchemaError(f"{path}: no split '{name}' (has {sorted(f['splits'])}). The feature file was built "
                              "for another dataset list: rebuild it with snakemake.")
        g = f["splits"][name]
        wanted = list(fields) if fields is not None else list(g.keys())
        missing = [w for w in wanted if w not in g]
        if missing:
            raise SchemaError(f"{path}: split '{name}' has no field(s) {missing}")
        return {w: g[w][()] for w in wanted}


def read_head(path) -> tuple[np.ndarray, np.ndarray]:
    with _open(path, "features") as f:
        return f["head/weight"][()], f["head/bias"][()]


def write_scores(path, scores: Mapping[str, np.ndarray], *, scorer: str, params: Mapping, features_file: str,
                 attrs: Mapping | None = None, inputs=None) -> None:
    """Write a score file; ``attrs``: extra attributes (e.g. the device a network scorer ran on);
    ``inputs``: what it was made from (lffood.integrity; default: ``features_file``).
    Scores that are not all finite are refused here, naming the scorer, the split and the model's
    features, instead of failing later in the metrics with a message that names nothing."""
    bad = {name: int((~np.isfinite(np.asarray(s, dtype=np.float64))).sum()) for name, s in scores.items()}
    bad = {name: n for name, n in bad.items() if n}
    if bad:
        raise DataError(f"{scorer} gave NaN or infinite scores ({', '.join(f'{n} of split {k}' for k, n in bad.items())}) "
                        f"on the model of {features_file}; nothing was written to {path}. Inspect the features "
                        f"(lffood inspect {features_file}): values that large or non-finite mean that the model "
                        f"diverged (see its training log) or the file is damaged (rebuild it).")
    with sealed_path(path, suffix=".h5", inputs=[features_file] if inputs is None else inputs) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["kind"] = "scores"
            f.attrs["scorer"] = scorer
            f.attrs["params"] = _json_attr(dict(params))
            f.attrs["features_file"] = str(features_file)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value if isinstance(value, (str, int, float)) else _json_attr(value)
            for name, s in scores.items():
                f.create_dataset(f"scores/{name}", data=np.asarray(s, dtype=np.float64))


def read_scores(path) -> tuple[dict[str, np.ndarray], dict]:
    with _open(path, "scores") as f:
        scores = {name: d[()] for name, d in f["scores"].items()}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    attrs["params"] = json.loads(attrs["params"])
    return scores, attrs


def write_stats(path, stats: Mapping[str, np.ndarray], *, scorer: str, params: Mapping, source: str,
                attrs: Mapping | None = None) -> None:
    """Write a scorer's fitted ID statistics (``{name: array}``); the manifest records ``source``."""
    with sealed_path(path, suffix=".h5", inputs=[source]) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["kind"] = "stats"
            f.attrs["stats_version"] = STATS_VERSION
            f.attrs["scorer"] = scorer
            f.attrs["params"] = _json_attr(dict(params))
            f.attrs["source"] = str(source)
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for key, value in (attrs or {}).items():
                f.attrs[key] = value if isinstance(value, (str, int, float)) else _json_attr(value)
            g = f.create_group("stats")
            for name, value in stats.items():
                arr = np.asarray(value)
                if arr.dtype.kind not in "biuf":
                    raise SchemaError(f"statistic '{name}' of scorer '{scorer}': numeric arrays only, got {arr.dtype}")
                g.create_dataset(name, data=arr.astype(np.int64 if arr.dtype.kind in "biu" else np.float64))


def read_stats(path, scorer: str | None = None, params: Mapping | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read fitted statistics; with ``scorer`` / ``params`` given, check that they are the ones asked for."""
    with _open(path, "stats") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("stats_version") != STATS_VERSION:
            raise SchemaError(f"{path}: statistics layout version {attrs.get('stats_version')!r}, expected "
                              f"{STATS_VERSION}. Delete it and rebuild it with snakemake.")
        stats = {name: d[()] for name, d in f["stats"].items()}
    attrs["params"] = json.loads(attrs["params"])
    if scorer is not None and attrs["scorer"] != scorer:
        raise SchemaError(f"{path}: statistics of scorer '{attrs['scorer']}', expected '{scorer}'")
    if params is not None and attrs["params"] != json.loads(_json_attr(dict(params))):
        raise SchemaError(f"{path}: statistics fitted with {attrs['params']}, but scoring asks for {dict(params)}. "
                          "The artifact is stale: rebuild it with snakemake.")
    return stats, attrs
