"""What the figures show: the t-SNE's models and OOD set (:func:`tsne_choice`), the heat maps' models
(:func:`heatmap_variants`), the paper table whose printed numbers a benchmark's figures show
(:func:`printed_table`) and the printed reference line of the sensitivity figure
(:func:`sensitivity_reference`), from the benchmark's ``figures`` config section and the paper's
numbers (no torch: the Snakefile reads them at parse time); and what a figure needs from the
network itself (torch, imported on use): the vectors behind the t-SNE figure (paper Fig. 2). The
feature file keeps only the norms of the local vectors, so the local background vectors
themselves come from running the checkpoint over a seeded subsample of images.

For each model variant, on the same images:

* ``id``: pooled penultimate features of ``per_group`` ID test images (and ``id_labels``);
* ``ood``: pooled features of ``per_group`` images of one OOD set;
* ``background``: ``per_group`` local vectors z_j of the last feature map of those ID images with
  p_j(y_i | x_i) < delta (LFF's background selection, eq. 4, with the model's own head), drawn
  without replacement from all selected ones (fewer when fewer are selected).

Written as one ``.npz`` (:func:`write_tsne_vectors`; read by
:func:`lffood.report.figures.read_tsne_vectors`), float32, in float32 arithmetic (no autocast).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Mapping

import numpy as np

from ..io import atomic_path

log = logging.getLogger("lffood.report.figure_data")


def _tsne_params(bench: Mapping) -> Mapping:
    """The benchmark's ``figures.tsne`` section (schema defaults filled in by lffood.config; a bare
    benchmark dict without it means: the defaults, i.e. no OOD set or models chosen)."""
    return bench.get("figures", {}).get("tsne", {})


def tsne_variants(bench: Mapping, tables: Mapping) -> tuple[list[str], list[str]]:
    """The models the t-SNE figure shows (key ``figures.tsne.variants``, else ``tables`` baseline
    and ours), and those of them the benchmark does not define."""
    variants = list(_tsne_params(bench).get("variants") or [tables["baseline"], tables["ours"]])
    return variants, [v for v in variants if v not in bench["variants"]]


def tsne_choice(bench: Mapping, tables: Mapping) -> dict:
    """The t-SNE figure's models (:func:`tsne_variants`) and OOD set (key ``figures.tsne.ood_set``,
    else the benchmark's first) for a validated benchmark config: lffood.config has checked that a
    chosen OOD set and chosen models exist; the models by role (``tables``) are checked here."""
    from ..errors import ConfigError

    variants, missing = tsne_variants(bench, tables)
    if missing:
        raise ConfigError(f"the t-SNE figure shows the variant(s) {missing} (keys figures.tsne.variants, or "
                          f"tables.baseline and tables.ours), which the benchmark does not define (it has "
                          f"{list(bench['variants'])}).")
    return {"variants": variants, "ood_set": _tsne_params(bench).get("ood_set") or bench["dataset"]["ood_sets"][0]}


def heatmap_variants(bench: Mapping) -> list[str]:
    """The models the heat-map figure shows, one row each (key ``figures.heatmaps.variants``, else
    every variant of the benchmark), checked to exist."""
    from ..errors import ConfigError
    from ..variants import variant_names

    chosen = bench.get("figures", {}).get("heatmaps", {}).get("variants")
    if not chosen:
        return list(variant_names(bench))
    missing = [v for v in chosen if v not in bench["variants"]]
    if missing:
        raise ConfigError(f"the heat-map figure shows the variant(s) {missing} (key figures.heatmaps.variants), which "
                          f"the benchmark does not define (it has {list(bench['variants'])}).")
    return list(chosen)


#: the paper tables whose per-benchmark printed averages the figures can show (Table IV repeats them)
PRINTED_TABLES = ("table1", "table2", "table3")


def printed_table(name: str, tables: Mapping, paper) -> str | None:
    """The paper table (config ``tables``: table1, table2 or table3) whose printed numbers the figures
    of benchmark ``name`` show: the first that lists the benchmark and that the paper prints it in
    (``paper``: :func:`lffood.report.paper_numbers.load`), or None (a benchmark the paper does not
    have, e.g. the embedded one)."""
    for t in PRINTED_TABLES:
        if name in (tables.get(t) or []) and ((paper["table"] == t) & (paper["benchmark"] == name)).any():
            return t
    return None


def sensitivity_reference(name: str, bench: Mapping, tables: Mapping, paper) -> dict | None:
    """The paper's reference line of the sensitivity figure (key ``figures.sensitivity.paper_reference``,
    a printed method): {method, table, auroc, fpr95}, the method's printed averages for this benchmark,
    or None when the key is null. A method the paper does not print for the benchmark is named."""
    from ..errors import ConfigError
    from .tables import AVERAGE

    method = bench.get("figures", {}).get("sensitivity", {}).get("paper_reference")
    if not method:
        return None
    key = f"benchmarks.{name}.figures.sensitivity.paper_reference"
    table = printed_table(name, tables, paper)
    if table is None:
        raise ConfigError(f"key '{key}': '{method}' needs the paper's numbers for benchmark '{name}', which the "
                          f"paper does not print in {' / '.join(PRINTED_TABLES)} (config key tables.<table> lists "
                          f"the benchmarks of each).")
    rows = paper[(paper["table"] == table) & (paper["benchmark"] == name) & (paper["method"] == method)
                 & (paper["ood_set"] == AVERAGE)]
    values = dict(zip(rows["metric"], rows["value"].astype(float)))
    if "auroc" not in values:
        printed = list(dict.fromkeys(paper[(paper["table"] == table) & (paper["benchmark"] == name)]["method"]))
        raise ConfigError(f"key '{key}': the paper's {table} prints no average AUROC of '{method}' for '{name}'; "
                          f"it prints {printed}.")
    return {"method": method, "table": table, "auroc": values["auroc"], "fpr95": values.get("fpr95")}


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def model_vectors(model, data, *, delta: float, batch_size: int, device, center_crop: int | None = None,
                  with_background: bool = True) -> dict[str, np.ndarray]:
    """Pooled features, labels and (``with_background``) the background local vectors (p_j < delta)
    of every image of ``data`` (a :class:`lffood.data.loader.TensorImages`)."""
    import torch

    from ..data.augment import center_crop as crop
    from ..local import local_gt_prob, local_vectors

    model.eval().to(device)
    pooled_all, labels_all, bg_all = [], [], []
    with torch.no_grad():
        for idx in data.index_batches(batch_size):
            x, y = data.batch(idx)
            if center_crop:
                x = crop(x, center_crop)
            _, pooled, fmap = model(x, return_features=True)
            pooled_all.append(pooled.float().cpu())
            labels_all.append(y.cpu())
            if with_background:
                p = local_gt_prob(fmap, model.head.weight, model.head.bias, y)
                bg_all.append(local_vectors(fmap.float())[p < delta].cpu())
    c = model.head.weight.shape[1]
    return {"features": torch.cat(pooled_all).numpy(), "labels": torch.cat(labels_all).numpy(),
            "background": torch.cat(bg_all).numpy() if bg_all else np.zeros((0, c), np.float32)}


def tsne_vectors(checkpoints: Mapping[str, str], *, train: str, test: str, ood: str, per_group: int, delta: float,
                 seed: int = 0, device_name: str = "auto", threads: int = 1, batch_size: int = 256,
                 center_crop: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Variant -> {id, id_labels, ood, background} (module docstring) for each checkpoint, on the same
    seeded images; ``train`` is read for its normalisation only."""
    from ..data.arrays import Split, load_split
    from ..data.loader import TensorImages
    from ..pipeline import normalization
    from ..runtime import select_device, set_threads
    from ..checkpoint import load_checkpoint

    set_threads(threads)
    device = select_device(device_name)
    mean, std = normalization(load_split(train, verify=False), train)
    rng = np.random.default_rng(seed)
    subsets = {}
    for name, path in (("id", test), ("ood", ood)):
        split = load_split(path)
        rows = _subsample(len(split), per_group, rng)
        subsets[name] = TensorImages(Split(np.asarray(split.images[rows]), np.asarray(split.labels[rows]), split.meta),
                                     mean, std, device)
    out = {}
    for v, ckpt in checkpoints.items():
        model, _ = load_checkpoint(ckpt, device)
        id_v = model_vectors(model, subsets["id"], delta=delta, batch_size=batch_size, device=device,
                             center_crop=center_crop)
        ood_v = model_vectors(model, subsets["ood"], delta=delta, batch_size=batch_size, device=device,
                              center_crop=center_crop, with_background=False)
        bg = id_v["background"]
        # a generator per variant, so that adding a variant never changes another's sample
        bg = bg[_subsample(len(bg), per_group, np.random.default_rng([seed, zlib.crc32(v.encode())]))]
        out[v] = {"id": id_v["features"], "id_labels": id_v["labels"], "ood": ood_v["features"], "background": bg}
        log.info("%s: %d ID and %d OOD features, %d of %d selected background vectors (p < %g)", v,
                 len(id_v["features"]), len(ood_v["features"]), len(bg), len(id_v["background"]), delta)
    return out


def write_tsne_vectors(checkpoints: Mapping[str, str], *, train: str, test: str, ood: str, ood_set: str, out: str,
                       per_group: int, delta: float, seed: int = 0, device_name: str = "auto", threads: int = 1,
                       batch_size: int = 256, center_crop: int | None = None, attrs: Mapping | None = None) -> dict:
    """:func:`tsne_vectors` to ``out`` (``.npz``: ``<variant>__<field>`` arrays and a JSON ``meta``)."""
    data = tsne_vectors(checkpoints, train=train, test=test, ood=ood, per_group=per_group, delta=delta, seed=seed,
                        device_name=device_name, threads=threads, batch_size=batch_size, center_crop=center_crop)
    meta = {**(attrs or {}), "variants": list(data), "ood_set": ood_set, "per_group": per_group, "delta": delta,
            "seed": seed, "checkpoints": dict(checkpoints)}
    arrays = {f"{v}__{k}": a for v, d in data.items() for k, a in d.items()}
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    return data
