"""One function per workflow stage. Rule scripts call these and nothing else, so the whole chain
can also be driven from Python (tests, notebooks) without Snakemake.

pandas (and torch) are imported inside the functions that use them: about 150 short scoring jobs
per embedded run import this module, and pandas alone would add ~0.2 s to each."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from . import h5schema, metrics
from .data.arrays import load_split, save_split
from .errors import DataError, SchemaError
from .integrity import current_hash, sealed_path
from .io import atomic_path
from .names import ID_SPLITS, split_names  # noqa: F401  (re-exported)
from .scorers import FeatureSet, Head, build_scorer, scorer_class

log = logging.getLogger("lffood.pipeline")

# ----------------------------------------------------------------------------- data
def prepare_embedded(bench: Mapping, outputs: Mapping[str, str]) -> None:
    from .data.embedded import generate

    ds = bench["dataset"]
    splits = generate(ds.get("generator", {}), seed=ds["seed"])
    missing = set(outputs) - set(splits)
    if missing:
        raise DataError(f"the embedded generator makes {sorted(splits)}; the config asks for {sorted(missing)} "
                        "(key dataset.ood_sets).")
    for name, path in outputs.items():
        save_split(path, splits[name])
        log.info("wrote %s: %d images %s", path, len(splits[name]), splits[name].images.shape[1:])


# ----------------------------------------------------------------------------- training
def normalization(split, path) -> tuple[list[float], list[float]]:
    """Per-channel mean and std stored with the ID training split (used for every split)."""
    if "mean" not in split.meta or "std" not in split.meta:
        raise DataError(f"{path}: the ID training split has no 'mean'/'std' normalisation in its metadata; "
                        "rebuild it with the workflow's data rule.")
    return split.meta["mean"], split.meta["std"]


def resume_path(ckpt_out: str | Path) -> Path:
    """Where a training job keeps its end-of-epoch state: beside its checkpoint, not a workflow output."""
    ckpt_out = Path(ckpt_out)
    return ckpt_out.with_name(f"{ckpt_out.stem}.resume.pt")


def run_training(spec: Mapping, *, variant: str, seed: int, train_path: str, ckpt_out: str, history_out: str,
                 monitor_out: str | None = None, device_name: str = "auto", threads: int = 1,
                 parent_ckpt: str | None = None, job: str = "", compile: bool = False,
                 init_weights: str | None = None) -> list[dict]:
    """Train one variant (``spec``: :func:`lffood.variants.training_spec`): from scratch or by importing
    ``spec['checkpoint']`` when it has no parent, else fine-tuned from ``parent_ckpt``. Writes the
    checkpoint (with the objective's own modules), the per-epoch history and, with ``monitor_out``,
    the local-vector monitor's bins (:mod:`lffood.monitor`; header only for an imported model). The
    end-of-epoch state is kept in :func:`resume_path` while the job runs, written as often as costs at
    most 1% of the training time (:class:`lffood.checkpoint.ResumeFile`): a rerun after a crash or
    SIGKILL continues after the last saved epoch (same configuration, seed, parent and data only)."""
    import hashlib

    import torch

    from .data.loader import TensorImages
    from .models import build_model
    from .objectives import build_objective
    from .checkpoint import ResumeFile, import_checkpoint, load_checkpoint, load_initial_weights, save_checkpoint
    from .monitor import LocalMonitor
    from .runtime import seed_everything, select_device, set_threads
    from .training import train

    set_threads(threads)
    seed_everything(seed, spec["deterministic"])
    device = select_device(device_name)
    split = load_split(train_path)
    meta = split.meta
    data = TensorImages(split, *normalization(split, train_path), device)
    num_classes = len(meta["classes"])
    imported = spec.get("checkpoint")
    if spec["parent"] is None:
        model = (import_checkpoint(imported, spec["model"], num_classes, device) if imported
                 else build_model(spec["model"], num_classes))
        if spec.get("init"):  # every weight but the head from a state_dict (variants.<name>.init)
            if not init_weights:
                raise ValueError(f"variant '{variant}' starts from init={spec['init']!r}: pass init_weights")
            load_initial_weights(model, init_weights, key=f"variants.{variant}.init")
            model.to(device)
    else:
        if not parent_ckpt:
            raise ValueError(f"variant '{variant}' is fine-tuned from '{spec['parent']}': pass parent_ckpt")
        model, _ = load_checkpoint(parent_ckpt, device)
    objective = build_objective(spec["objective"], spec["params"], feature_dim=model.feature_dim,
                                num_classes=num_classes)
    stage_name = f"{spec['stage_name']}[{variant}]"
    log.info("%s: objective %s %s, seed %d, %d training images, %d classes, model %s%s", stage_name,
             spec["objective"], spec["params"], seed, len(data), num_classes, spec["model"],
             f", from {spec['parent']} ({parent_ckpt})" if spec["parent"] else "")
    parent = parent_ckpt or imported
    parent_sha256 = current_hash(parent) if parent else None  # a parent checkpoint's: verified by load_checkpoint
    resume, monitor = None, LocalMonitor()
    if imported:
        # a model trained elsewhere: no training here; one history row records where it came from
        log.info("%s: using %s (key variants.%s.checkpoint) instead of training", stage_name, imported, variant)
        history = [{"epoch": 0, "imported_from": str(imported), "imported_sha256": parent_sha256}]
    else:
        st = Path(train_path).stat()
        fingerprint = hashlib.sha256(json.dumps(
            {"spec": spec, "seed": seed, "parent_sha256": parent_sha256, "data": [st.st_size, st.st_mtime_ns]},
            sort_keys=True, default=str).encode()).hexdigest()
        resume = ResumeFile(resume_path(ckpt_out), fingerprint)
        history = train(model, data, spec["stage"], objective=objective, seed=seed, device=device,
                        guard=spec["guard"], stage_name=stage_name, amp=spec["amp"],
                        hooks=[monitor] if monitor_out else [], resume=resume, job=job, compile=compile)
    # the device is recorded, not part of the artifact's identity (a rerun on another device is not asked for)
    meta_out = {"model": dict(spec["model"]), "num_classes": num_classes, "classes": meta["classes"],
                "variant": variant, "seed": seed, "stage": dict(spec["stage"]),
                "objective": {"name": spec["objective"], "params": dict(spec["params"])},
                "parent": spec["parent"], "parent_sha256": parent_sha256, "torch": str(torch.__version__),
                "device": str(device)}
    from .distributed import world

    if world()[0] == 0:  # with DDP, process 0 writes for all
        save_checkpoint(ckpt_out, model, meta_out, objective, inputs={parent: parent_sha256} if parent else None)
        with atomic_path(history_out) as tmp:
            import pandas as pd

            pd.DataFrame(history).assign(variant=variant, seed=seed).to_csv(tmp, index=False)
        if monitor_out:
            with atomic_path(monitor_out) as tmp:
                monitor.table().to_csv(tmp, index=False)
        if resume is not None:
            resume.remove()  # the checkpoint is complete: nothing to resume any more
    return history


# ----------------------------------------------------------------------------- extraction
def run_extraction(extraction: Mapping, *, checkpoint: str, split_paths: Mapping[str, str], out: str, attrs: Mapping,
                   amp: bool = True, batch_size: int = 512, device_name: str = "auto", threads: int = 1) -> None:
    """Run ``checkpoint`` over every split and write the HDF5 feature file. ``extraction``: what the
    features depend on (``center_crop`` and the requests of optional fields: ``multiscale``, the
    scorers' such as FeatureNorm's ``block_norms``: :func:`lffood.variants.extraction_params`), to which
    the fields the checkpoint's objective ``provides`` are added; ``batch_size`` and the device change
    only how fast they are computed, and are recorded in the file's attributes, not in its identity."""
    from .data.loader import TensorImages
    from .extraction import extract_split
    from .fields import requests_in
    from .checkpoint import load_checkpoint
    from .runtime import library_versions, select_device, set_threads

    set_threads(threads)
    device = select_device(device_name)
    model, ck_meta, objective = load_checkpoint(checkpoint, device, with_objective=True)
    config = {k: ck_meta.get(k) for k in ("model", "stage", "objective", "variant", "seed", "parent", "parent_sha256")}
    config["extraction"] = dict(extraction)
    requests = requests_in(extraction, objective.provides if objective is not None else ())
    train_split = load_split(split_paths["train"])
    mean, std = normalization(train_split, split_paths["train"])
    splits, roles = {}, {}
    started, total = time.perf_counter(), len(split_paths)
    for i, (name, path) in enumerate(split_paths.items()):
        split = train_split if name == "train" else load_split(path)
        role = split.meta.get("role", "ood")
        data = TensorImages(split, mean, std, device)
        splits[name] = extract_split(model, data, batch_size=batch_size, device=device, role=role, amp=amp,
                                     center_crop=extraction.get("center_crop"), requests=requests,
                                     objective=objective)
        roles[name] = role
        log.info("extracted %s (%s): %d samples (split %d/%d, %s)", name, role, len(split), i + 1, total,
                 _progress(started, i + 1, total))
    h5schema.write_features(
        out, head_weight=model.head.weight.detach().cpu().numpy(), head_bias=model.head.bias.detach().cpu().numpy(),
        splits=splits, roles=roles,
        attrs={**attrs, "config": config, "checkpoint": str(checkpoint), "checkpoint_sha256": current_hash(checkpoint),
               "id_dataset": train_split.meta.get("benchmark", "unknown"),
               "ood_datasets": [n for n, r in roles.items() if r == "ood"],
               "dataset_files": {name: str(path) for name, path in split_paths.items()},
               "versions": library_versions(), "classes": ck_meta["classes"],
               "device": str(device), "batch_size": int(batch_size)})


def _progress(started: float, done: int, total: int) -> str:
    """``12.3s elapsed, about 45s left`` from the fraction of work done (for long stages' logs)."""
    elapsed = time.perf_counter() - started
    left = elapsed / max(done, 1) * (total - done)
    return f"{elapsed:.1f}s elapsed, about {left:.0f}s left"


# ----------------------------------------------------------------------------- scoring
# Fitted ID statistics are an artifact (``stats/<variant>/<scorer>.h5``, lffood.h5schema "stats"):
# fitted once from the ID training split, then read by every scoring job, never refitted there.
def feature_set(path, split: str, extras=()) -> FeatureSet:
    """What a scorer sees of one split of a feature file: logits, features, labels and the optional
    fields ``extras`` (a scorer's ``requires``)."""
    d = h5schema.read_split(path, split, ["logits", "features", "labels", *extras])
    return FeatureSet(d["logits"], d["features"], d["labels"], {k: d[k] for k in extras})


def _scored_splits(roles: Mapping[str, str]) -> list[str]:
    return [name for name, role in roles.items() if role != "id_train"]


def check_extracted_for(sc, features_path: str) -> None:
    """Refuse a feature file extracted with other settings than the scorer asks extraction for
    (:meth:`Scorer.extraction_request`, e.g. FeatureNorm's jigsaw grid)."""
    wanted = sc.extraction_request(sc.params)
    if not wanted:
        return
    done = json.loads(h5schema.read_attrs(features_path).get("config", "{}")).get("extraction", {})
    for key, settings in wanted.items():
        if done.get(key) != settings:
            raise SchemaError(f"{features_path}: extracted with {key}={done.get(key)!r}, but scorer '{sc.name}' with "
                              f"parameters {sc.params} needs {key}={settings!r}. Rebuild the feature file with "
                              "snakemake (the extraction job's params include every scorer's request, so a plain "
                              "rerun does it).")


def run_fit_stats(features_path: str, scorer: str, params: Mapping, out: str) -> dict[str, np.ndarray]:
    """Fit a scorer's ID statistics from the cached ID training features and write them to ``out``."""
    sc = build_scorer(scorer, params)
    if not sc.needs_fit:
        raise ValueError(f"scorer '{scorer}' fits no statistics")
    check_extracted_for(sc, features_path)
    sc.fit(feature_set(features_path, "train", sc.fit_fields()), Head(*h5schema.read_head(features_path)))
    h5schema.write_stats(out, sc.stats, scorer=scorer, params=sc.fit_params, source=features_path)
    log.info("fitted %s statistics %s from %s", scorer, {k: np.shape(v) for k, v in sc.stats.items()}, features_path)
    return sc.stats


def _fitted_stats(sc, stats_path: str | None):
    """The scorer's fitted ID statistics read from ``stats_path`` (None when it needs none)."""
    if not sc.needs_fit:
        return None
    if stats_path is None:
        raise ValueError(f"scorer '{sc.name}' needs its fitted statistics: pass stats_path (build it with "
                         f"run_fit_stats or snakemake .../stats/<variant>/{sc.name}.h5)")
    stats, _ = h5schema.read_stats(stats_path, scorer=sc.name, params=sc.fit_params)
    return stats


def load_scorer(features_path: str, scorer: str, params: Mapping, stats_path: str | None = None):
    """A scorer ready to score cached features: head, fitted statistics from ``stats_path`` (never
    refitted here), and for KNN the ID training bank from the feature file."""
    sc = build_scorer(scorer, params)
    check_extracted_for(sc, features_path)
    sc.load(Head(*h5schema.read_head(features_path)), _fitted_stats(sc, stats_path))
    if sc.uses_train_bank:
        sc.set_bank(feature_set(features_path, "train", sc.requires))
    return sc


def run_scoring(features_path: str, scorer: str, params: Mapping, out: str,
                stats_path: str | None = None) -> dict[str, np.ndarray]:
    """Score every non-training split of a feature file with a cached-feature scorer."""
    if scorer_class(scorer).score_on != "features":
        raise ValueError(f"scorer '{scorer}' needs the network: use run_scoring_network")
    sc = load_scorer(features_path, scorer, params, stats_path)
    scores = {name: sc.score(feature_set(features_path, name, sc.requires))
              for name in _scored_splits(h5schema.list_splits(features_path))}
    h5schema.write_scores(out, scores, scorer=scorer, params=sc.params, features_file=features_path,
                          inputs=[features_path, stats_path])
    return scores


def _network(checkpoint: str, split_paths: Mapping[str, str], device_name: str, threads: int):
    import torch

    from .checkpoint import load_checkpoint
    from .runtime import select_device, set_threads
    from .training import channels_last_allowed

    set_threads(threads)
    device = select_device(device_name)
    model, _ = load_checkpoint(checkpoint, device)
    model.eval()
    if channels_last_allowed(model, device):  # the first convolution turns NCHW inputs channels-last
        model.to(memory_format=torch.channels_last)
    train = load_split(split_paths["train"])
    return model, device, train, normalization(train, split_paths["train"])


def run_scoring_network(scorer: str, params: Mapping, *, checkpoint: str, split_paths: Mapping[str, str], out: str,
                        stats_path: str | None = None, batch_size: int = 256, device_name: str = "auto",
                        threads: int = 1) -> dict[str, np.ndarray]:
    """Score every split but ``train`` with a scorer that runs the network (ODIN); its statistics, if
    it has any, were fitted from cached features (``stats_path``)."""
    from .data.loader import TensorImages

    sc = build_scorer(scorer, params)
    if sc.score_on != "network":
        raise ValueError(f"scorer '{scorer}' scores cached features: use run_scoring")
    model, device, train, (mean, std) = _network(checkpoint, split_paths, device_name, threads)
    head = Head(model.head.weight.detach().cpu().numpy(), model.head.bias.detach().cpu().numpy())
    sc.load(head, _fitted_stats(sc, stats_path))
    scores = {}
    started, todo = time.perf_counter(), [n for n in split_paths if n != "train"]
    for i, name in enumerate(todo):
        data = TensorImages(load_split(split_paths[name]), mean, std, device)
        scores[name] = sc.score_network(model, data, batch_size=batch_size, device=device)
        log.info("%s on %s: %d scores (split %d/%d, %s)", scorer, name, len(scores[name]), i + 1, len(todo),
                 _progress(started, i + 1, len(todo)))
    h5schema.write_scores(out, scores, scorer=scorer, params=sc.params, features_file=checkpoint,
                          attrs={"device": str(device), "batch_size": int(batch_size)}, inputs=[checkpoint, stats_path])
    return scores


def run_metrics(features_path: str, score_paths: Mapping[str, str], out: str, labels: Mapping, *,
                n_boot: int = 1000, boot_seed: int = 0) -> "pd.DataFrame":
    """One tidy row per (scorer, OOD set): AUROC, FPR95, AUPR-In, AUPR-Out, ID accuracy (fractions),
    and the bootstrap standard error of each over test images (``<metric>_se``, ``id_acc_se``; same
    unit; config ``stats.bootstrap`` resamples ``n_boot`` from ``stats.seed`` ``boot_seed``:
    :func:`lffood.stats.bootstrap`), which tables combine with the spread over seeds
    (:mod:`lffood.stats`). The point estimates are :func:`lffood.metrics.ood_metrics`, the one metric
    implementation. The integrity manifest records the feature and score files' hashes and the rows
    the file must hold (``labels`` x scorers x OOD sets: :func:`lffood.metrics.check_complete` on read)."""
    from . import stats

    roles = h5schema.list_splits(features_path)
    ood_sets = [n for n, r in roles.items() if r == "ood"]
    test = h5schema.read_split(features_path, "test", ["preds", "labels"])
    acc = metrics.accuracy(test["preds"], test["labels"])
    rows, scores = [], {}
    for scorer, path in score_paths.items():
        scores[scorer], _ = h5schema.read_scores(path)
        for name in ood_sets:
            try:
                values = metrics.ood_metrics(scores[scorer]["test"], scores[scorer][name])
            except ValueError as exc:  # name the file: a bare "scores contain NaN" says nothing of where
                raise DataError(f"{path}: splits 'test' / '{name}' of scorer {scorer}: {exc}. Rebuild it: snakemake "
                                f"--force {path}, then run the workflow as usual.") from exc
            rows.append({**labels, "scorer": scorer, "ood_set": name, **values, "id_acc": acc})
    started = time.perf_counter()
    boot = stats.bootstrap(scores, ood_sets, n_boot=n_boot, seed=boot_seed)  # same resamples for every scorer
    correct = np.asarray(test["preds"]) == np.asarray(test["labels"])
    acc_se = stats.standard_error(stats.bootstrap_mean(correct, "test", n_boot=n_boot, seed=boot_seed))
    for row in rows:
        for m, samples in boot[row["scorer"]][row["ood_set"]].items():
            row[f"{m}_se"] = stats.standard_error(samples)
        row["id_acc_se"] = acc_se
    log.info("bootstrap standard errors: %d resamples of %d scorer(s) x %d OOD set(s) in %.1f s", n_boot,
             len(score_paths), len(ood_sets), time.perf_counter() - started)
    import pandas as pd

    df = pd.DataFrame(rows)
    expected = metrics.expected_rows(labels, list(score_paths), ood_sets)
    with sealed_path(out, inputs=[features_path, *score_paths.values()], extra={"rows": expected}) as tmp:
        df.to_csv(tmp, index=False)
    return df
