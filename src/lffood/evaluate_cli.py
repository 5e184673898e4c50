"""``lffood evaluate``: the OOD metrics of every applicable scorer on precomputed features, in one command.

Two inputs, both the arrays your own code already has (no network runs here; for a torch model use
:func:`lffood.evaluate.evaluate` in Python):

* a feature file of the workflow (``results/<bench>/seed<s>/features/<variant>.h5``): its ID training,
  ID test and OOD splits, its head and its training objective, e.g. to score it with other scorers or
  parameters than the config's::

      lffood evaluate results/embedded/seed0/features/ce.h5 --scorers energy knn --params '{"knn": {"k": 10}}'

* ``.npz`` files of arrays, one per split: ``logits`` (N, K), ``features`` (N, C, the head's input),
  ``labels`` (N,; ID splits, optional) and any optional feature-file field by name (``multiscale``,
  ``block_norms``, ...: ``lffood inspect`` lists them); the head in ``--head`` (``weight`` (K, C),
  ``bias`` (K,)) or as ``head_weight`` / ``head_bias`` in the training file::

      lffood evaluate --train train.npz --test test.npz --ood textures=tex.npz far=far.npz --out metrics.csv

The table prints percentages; ``--out`` writes the workflow's metrics columns (fractions). This module
imports neither torch nor pandas until the command runs (``lffood --help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HEAD_KEYS = ("head_weight", "head_bias")

#: ``lffood evaluate --help`` (plain text: argparse prints it as it is)
DESCRIPTION = """\
OOD metrics (AUROC, FPR95, AUPR-In, AUPR-Out, ID accuracy) of every applicable scorer on
precomputed features: the workflow's scorers and metric code. Higher score = more in-distribution.

Input, one of:
  a feature file of the workflow (its splits, head and training objective):
    lffood evaluate results/embedded/seed0/features/ce.h5 --scorers energy knn --params '{"knn": {"k": 10}}'
  one .npz per split with arrays logits (N, K), features (N, C: the head's input), labels (N,; ID
  splits) and optional fields by name (multiscale, block_norms, ...); the head as head_weight /
  head_bias in the --train file, or --head head.npz with weight (K, C) and bias (K,):
    lffood evaluate --train train.npz --test test.npz --ood textures=tex.npz far=far.npz --out metrics.csv

The table prints percentages; --out writes the tidy table in fractions (the workflow's metrics
columns). For a torch model, use lffood.evaluate.evaluate in Python (docs/evaluate.md)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command to ``lffood``'s subcommands (its function: :func:`main`)."""
    p = subparsers.add_parser(
        "evaluate", help="OOD metrics of every applicable scorer on a feature file or on .npz arrays (your own model)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features", nargs="?", help="a feature file of the workflow (.h5); or give --train/--test/--ood")
    p.add_argument("--train", metavar="NPZ",
                   help="ID training split: logits, features, labels (+ head_weight, head_bias)")
    p.add_argument("--test", metavar="NPZ", help="ID test split: logits, features, labels (for the ID accuracy)")
    p.add_argument("--ood", metavar="NAME=NPZ", nargs="+", action="extend", default=[],
                   help="OOD sets, each name=path (logits, features)")
    p.add_argument("--head", metavar="NPZ", help="the linear head: arrays weight (K, C) and bias (K,) "
                                                 "(default: head_weight, head_bias in the --train file)")
    p.add_argument("--scorers", nargs="+", metavar="NAME",
                   help="scorers to run (default: every registered one that applies; `lffood scorers` lists them)")
    p.add_argument("--params", metavar="JSON", default="{}",
                   help='scorer parameters over the defaults, e.g. \'{"knn": {"k": 10}, "react": {"percentile": 95}}\'')
    p.add_argument("--objective", default=None,
                   help="the model's training objective, for the methods' own scores (ssd_plus, cider, npos; "
                        "default: a feature file's own, else none)")
    p.add_argument("--out", metavar="CSV", help="write the tidy table (fractions, the workflow's metrics columns)")
    p.set_defaults(fn=main)
    return p


def _npz(path: str) -> dict:
    import numpy as np

    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _from_arrays(args):
    """``(id_train, id_test, ood, head)`` from the .npz files."""
    missing = [o for o, v in (("--train", args.train), ("--test", args.test), ("--ood", args.ood)) if not v]
    if missing:
        raise ValueError(f"give a feature file, or all of --train, --test and --ood (missing: {' '.join(missing)})")
    train = _npz(args.train)
    if args.head:
        h = _npz(args.head)
        if not {"weight", "bias"} <= set(h):
            raise ValueError(f"{args.head}: needs arrays 'weight' (K, C) and 'bias' (K,); has {sorted(h)}")
        head = (h["weight"], h["bias"])
    elif all(k in train for k in HEAD_KEYS):
        head = (train["head_weight"], train["head_bias"])
    else:
        raise ValueError(f"{args.train}: no head_weight / head_bias arrays; pass the head with --head")
    ood = {}
    for item in args.ood:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--ood {item!r}: write each OOD set as name=path.npz")
        if name in ood or name == "test":
            raise ValueError(f"--ood: the name '{name}' is {'taken' if name in ood else 'the ID test split'}")
        ood[name] = _npz(path)
    strip = {k: v for k, v in train.items() if k not in HEAD_KEYS}
    return strip, _npz(args.test), ood, head


def _from_feature_file(path: str, scorers, params):
    """``(id_train, id_test, ood, head, objective)`` of a workflow feature file; refuses a scorer whose
    extraction settings differ from the file's (FeatureNorm's jigsaw grid), as the workflow does."""
    from . import h5schema
    from .fields import registered_fields
    from .pipeline import check_extracted_for
    from .scorers import FeatureSet, build_scorer, scorer_names

    optional = {n for n, f in registered_fields().items() if f.optional}
    roles = h5schema.list_splits(path)

    def split(name):
        present = h5schema.describe_datasets(path, "features", f"splits/{name}")
        d = h5schema.read_split(path, name, ["logits", "features", "labels", *(k for k in present if k in optional)])
        return FeatureSet(d["logits"], d["features"], d["labels"], {k: v for k, v in d.items() if k in optional})

    by_role = {r: [n for n, role in roles.items() if role == r] for r in ("id_train", "id_test", "ood")}
    if len(by_role["id_train"]) != 1 or len(by_role["id_test"]) != 1 or not by_role["ood"]:
        raise ValueError(f"{path}: needs one ID training, one ID test and at least one OOD split; has {roles}")
    test = split(by_role["id_test"][0])
    for name in scorers or scorer_names():
        sc = build_scorer(name, (params or {}).get(name))
        if sc.extraction_request(sc.params) and set(sc.requires) <= set(test.extras):
            check_extracted_for(sc, path)
    config = json.loads(h5schema.read_attrs(path).get("config", "{}"))
    objective = (config.get("objective") or {}).get("name")
    return (split(by_role["id_train"][0]), test, {n: split(n) for n in by_role["ood"]},
            h5schema.read_head(path), objective)


def _print(table, out=None) -> None:
    out = out or sys.stdout
    shown = table.copy()
    for col in [c for c in shown.columns if c not in ("scorer", "ood_set")]:
        shown[col] = shown[col] * 100
    names = {"auroc": "AUROC", "fpr95": "FPR95", "aupr_in": "AUPR-In", "aupr_out": "AUPR-Out", "id_acc": "ID acc"}
    print(shown.rename(columns=names).to_string(index=False, float_format=lambda v: f"{v:.2f}"), file=out)
    print("(percent; AUROC, AUPR: higher is better; FPR95: FPR at 95% TPR, lower is better)", file=out)


def main(args) -> int:
    """Run ``lffood evaluate`` (``args`` from :func:`add_parser`'s parser)."""
    from .evaluate import evaluate

    try:
        params = json.loads(args.params)
        if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
            raise ValueError("--params: a JSON object {scorer: {parameter: value}}")
        if args.features:
            if args.train or args.test or args.ood or args.head:
                raise ValueError("give either a feature file or --train/--test/--ood (with --head), not both")
            train, test, ood, head, objective = _from_feature_file(args.features, args.scorers, params)
        else:
            (train, test, ood, head), objective = _from_arrays(args), None
        table = evaluate(id_train=train, id_test=test, ood=ood, head=head, scorers=args.scorers, params=params,
                         objective=args.objective or objective)
    except (ValueError, KeyError, TypeError) as exc:  # the input's problem, said in one line
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    for name, why in table.attrs["skipped"].items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    if table.empty:
        print("error: no scorer could run on these inputs (see the reasons above)", file=sys.stderr)
        return 1
    _print(table)
    if args.out:
        from .io import atomic_path

        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {args.out}")
    return 0
