"""Evaluate your own model in one call, or use any registered scorer as a detector in your own loop.

The workflow evaluates the models it trains; this module evaluates *yours* with the same code:

* :func:`evaluate` runs every applicable scorer of the registry (:mod:`lffood.scorers`) on a torch
  classifier, or on precomputed logits, features and the linear head, and returns a tidy table
  (scorer, ood_set, auroc, fpr95, aupr_in, aupr_out, id_acc), fractions as in the workflow's
  metrics files, from the one metric implementation (:func:`lffood.metrics.ood_metrics`);
* :func:`detector` makes one scorer a detector with ``fit(id_train)`` and ``score(batch)``;
* :func:`wrap` reads an arbitrary torchvision-style classifier: forward hooks on its last feature map
  (``feature_layer``) and its linear ``head`` give the logits, the penultimate features (the head's
  input) and the map, so that extraction (:func:`lffood.extraction.extract_split`, the workflow's)
  computes the fields of :mod:`lffood.fields` from one forward pass.

Nothing here re-implements a scorer, a feature field or a metric: the scorers are built and fitted
through the registry (``build_scorer``, ``Scorer.fit`` / ``score`` / ``score_network``), the fields
come from the field registry through the workflow's extraction, the numbers from ``lffood.metrics``.
A scorer whose inputs are missing is skipped with the reason logged and kept in
``table.attrs["skipped"]``: FeatureNorm needs the model's residual blocks, CSD the last feature map,
ODIN the network and the inputs' normalisation std, SSOD's and CSI's scores their objective's own
modules, SSD+'s / CIDER's / NPOS's own scores a model of their objective (``objective=``).

Higher score = more in-distribution, for every scorer and detector.

Data: a float tensor or array of already normalised images (N, C, H, W), a pair ``(images, labels)``,
a ``torch.utils.data.Dataset`` or ``DataLoader`` yielding ``(image, label)`` (or images only), or the
project's :class:`lffood.data.loader.TensorImages`; batches are streamed, never held whole. Labels are
needed on the ID training split by Mahalanobis and LINe (skipped without), and on the ID test split
for ``id_acc``. See ``docs/evaluate.md`` and ``examples/evaluate_own_model.py``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from . import metrics
from .fields import field as field_spec
from .fields import registered_fields
from .models.base import FeatureMapClassifier
from .scorers import FeatureSet, Head, Scorer, build_scorer, scorer_class, scorer_names

log = logging.getLogger("lffood.evaluate")

__all__ = ["Detector", "Evaluation", "ImageSource", "WrappedClassifier", "as_classifier", "as_feature_set",
           "as_head", "detector", "evaluate", "extract", "metrics_table", "score_all", "wrap"]

#: the columns of :func:`evaluate`'s table (``id_acc`` only where the ID test labels are known)
COLUMNS = ("scorer", "ood_set", *metrics.METRICS, "id_acc")


# ----------------------------------------------------------------------------- reading a model
def _module_names(model: nn.Module) -> str:
    """What a wrong module name is told: the model's top-level modules and its linear layers."""
    top = [n for n, _ in model.named_children()]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return f"its top-level modules are {top}; its linear layers {linear}"


def _submodule(model: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        close = difflib.get_close_matches(name, [n for n, _ in model.named_modules() if n], n=3)
        raise ValueError(f"{what} '{name}' is not a module of {type(model).__name__}: {_module_names(model)}"
                         + (f"; close: {close}" if close else "") + ". Name it with its dotted path "
                         "(model.get_submodule), e.g. wrap(model, feature_layer='features', head='classifier.1')."
                         ) from None


def _torchvision_resnet_blocks(model: nn.Module) -> list[str]:
    """The residual blocks of a torchvision ResNet / Wide-ResNet / ResNeXt (children of layer1..4), in
    forward order: FeatureNorm's candidates, as :meth:`TorchvisionResNet50.blocks` has them."""
    layers = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if not all(isinstance(layer, nn.Sequential) for layer in layers):
        return []
    return [f"layer{i}.{n}" for i, layer in enumerate(layers, 1) for n, _ in layer.named_children()]


class WrappedClassifier(nn.Module):
    """A classifier read through forward hooks, with the interface of the project's backbones
    (:class:`lffood.models.base.FeatureMapClassifier`): ``forward(x, return_features=True)`` ->
    ``(logits, pooled, z)``, ``head``, ``feature_dim``, ``num_classes``, ``blocks()``.

    The model runs its own ``forward`` unchanged. ``pooled`` is the input of the linear ``head`` and
    ``logits`` its output, so ``logits = head(pooled)`` holds exactly, as every scorer that reapplies
    the head assumes (ReAct, DICE, ViM, LINe); ``z`` is the output of ``feature_layer`` as the
    forward pass left it (DenseNet's in-place ReLU included). On the first forward pass the wrapper
    checks that the head's input is the global average pool of ``z`` (what the map-based fields
    assume: CSD's region vectors, LFF's local vectors) and refuses the names otherwise. Without a
    ``feature_layer`` the head's input stands in for a 1 x 1 map: the logit- and feature-based
    scorers run, the map-based ones are skipped."""

    cpu_channels_last = False  # torchvision's strided 1x1 shortcuts (lffood.models.base)

    def __init__(self, model: nn.Module, feature_layer: str | None, head: str, blocks: Sequence[str] = ()):
        super().__init__()
        self.model = model
        self.feature_layer, self.head_name, self.block_names = feature_layer, head, list(blocks)
        linear = _submodule(model, head, "head")
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"head '{head}' of {type(model).__name__} is a {type(linear).__name__}, not an nn.Linear: "
                             f"name the linear layer that makes the logits; {_module_names(model)}.")
        if feature_layer is not None:
            _submodule(model, feature_layer, "feature_layer")
        for name in self.block_names:
            _submodule(model, name, "block")
        self.feature_dim, self.num_classes = linear.in_features, linear.out_features
        self._checked = False

    @property
    def head(self) -> nn.Linear:
        return self.model.get_submodule(self.head_name)

    @property
    def has_feature_map(self) -> bool:
        return self.feature_layer is not None

    def blocks(self) -> list[nn.Module]:
        """The residual blocks named at :func:`wrap` (FeatureNorm's candidates), in forward order."""
        return [self.model.get_submodule(n) for n in self.block_names]

    def forward(self, x: torch.Tensor, return_features: bool = False):
        found: dict[str, Any] = {}

        def at_head(_m, inputs, output):
            found["pooled"], found["logits"] = inputs[0], output

        hooks = [self.head.register_forward_hook(at_head)]
        if self.feature_layer is not None:
            hooks.append(self.model.get_submodule(self.feature_layer).register_forward_hook(
                lambda _m, _i, output: found.__setitem__("z", output)))
        try:
            self.model(x)
        finally:
            for h in hooks:
                h.remove()
        if "logits" not in found:
            raise RuntimeError(f"head '{self.head_name}' was not called in {type(self.model).__name__}.forward")
        logits, pooled = found["logits"], found["pooled"]
        if not return_features:
            return logits
        if pooled.dim() != 2:
            raise ValueError(f"the input of head '{self.head_name}' has shape {tuple(pooled.shape)}, not (batch, "
                             "features): name a head that the model calls on pooled, flattened features")
        if self.feature_layer is None:
            return logits, pooled, pooled[:, :, None, None]
        if "z" not in found:
            raise RuntimeError(f"feature_layer '{self.feature_layer}' was not called in "
                               f"{type(self.model).__name__}.forward")
        z = found["z"]
        if not self._checked:
            self._check_pool(z, pooled)
        return logits, pooled, z

    def _check_pool(self, z, pooled) -> None:
        ok = isinstance(z, torch.Tensor) and z.dim() == 4 and z.shape[:2] == pooled.shape
        if ok:
            gap, ref = z.detach().float().mean(dim=(2, 3)), pooled.detach().float()
            # 1% of the features' scale: bfloat16 rounding passes, a missing ReLU or another pooling does not
            ok = bool((gap - ref).abs().max() <= 1e-2 * (ref.abs().max() + 1e-6))
        if not ok:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"the input of head '{self.head_name}' ({tuple(pooled.shape)}) is not the global average pool of "
                f"feature_layer '{self.feature_layer}''s output ({shape}): name the module whose output the model "
                "pools into the head, or wrap(model, feature_layer=None, ...) to read the head's input only "
                "(the scorers on logits and features run, those on the feature map are skipped).")
        self._checked = True


def wrap(model: nn.Module, feature_layer: str | None = "layer4", head: str = "fc",
         blocks: Sequence[str] | str | None = "auto") -> nn.Module:
    """``model`` as the project's backbones expose themselves (:class:`WrappedClassifier`): hooks on
    the module ``feature_layer`` (its output is the last feature map, global-average-pooled into the
    head) and on the nn.Linear ``head``, both dotted paths of ``model.get_submodule``.

    The defaults read every torchvision ResNet (resnet18..152), Wide-ResNet (wide_resnet50_2,
    wide_resnet101_2) and ResNeXt; for other architectures see ``docs/evaluate.md`` (DenseNet:
    ``"features"``, ``"classifier"``; MobileNetV2 / EfficientNet: ``"features"``, ``"classifier.1"``;
    VGG, ViT, ConvNeXt: ``feature_layer=None``). ``blocks``: the residual blocks whose FeatureNorm
    the scorer of that name compares (``"auto"``: layer1..layer4's blocks where the model has them,
    else none, and FeatureNorm is skipped). A project backbone (or an already wrapped model) is
    returned as it is: it has this interface already."""
    if isinstance(model, (FeatureMapClassifier, WrappedClassifier)):
        return model
    if blocks == "auto":
        blocks = _torchvision_resnet_blocks(model) if feature_layer == "layer4" else []
    return WrappedClassifier(model, feature_layer, head, list(blocks or ()))


def as_classifier(model: nn.Module) -> nn.Module:
    """A project backbone or wrapped model as it is; any other model through :func:`wrap`'s defaults
    (torchvision ResNets), with the error that names its modules when those do not fit."""
    return wrap(model)


def as_head(head) -> Head:
    """:class:`Head` from a Head, an nn.Linear, a ``(weight, bias)`` pair or a mapping with ``weight``
    and ``bias`` (a linear layer without bias has bias 0)."""
    if isinstance(head, Head):
        return head
    if isinstance(head, nn.Linear):
        weight, bias = head.weight, head.bias
    elif isinstance(head, Mapping):
        weight, bias = head["weight"], head.get("bias")
    elif isinstance(head, Sequence) and len(head) == 2:
        weight, bias = head
    else:
        raise TypeError(f"head: expected an lffood Head, an nn.Linear, (weight, bias) or {{'weight', 'bias'}}; "
                        f"got {type(head).__name__}")
    w = _numpy(weight)
    b = np.zeros(w.shape[0], dtype=w.dtype) if bias is None else _numpy(bias)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"head: weight must be (classes, features) and bias (classes,); got {w.shape} and {b.shape}")
    return Head(w, b)


def _head_of(model: nn.Module) -> Head:
    return as_head(model.head)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ----------------------------------------------------------------------------- data
class ImageSource:
    """One split's images as extraction and ODIN read them (the interface of
    :class:`lffood.data.loader.TensorImages`: ``len``, ``index_batches``, ``prefetched``, ``batch``,
    ``std``) over a tensor, an array, an ``(images, labels)`` pair, a Dataset or a DataLoader.

    Batches are streamed in order, each moved to ``device`` as it is read: ``index_batches`` reads the
    next batch and yields its positions, ``batch`` returns that batch. Images must be normalised as
    the model expects them; ``std`` is that normalisation's per-channel std (ODIN's step is in pixel
    units, divided by it). Unknown labels are -1, or 0 on an ID split (extraction computes
    ``local_gt_prob`` there; that field is dropped): :attr:`labelled` says whether every batch had them."""

    def __init__(self, data, *, batch_size: int = 256, device="cpu", std: Sequence[float] | None = None,
                 id_split: bool = False):
        self.device = torch.device(device)
        self.std = None if std is None else [float(s) for s in std]
        self.fill = 0 if id_split else -1
        self.labelled = True
        self._batch_size = batch_size
        self._current = None
        images, labels = (data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, None))
        if isinstance(images, (torch.Tensor, np.ndarray)):
            images = torch.as_tensor(images)
            if images.dim() != 4:
                raise ValueError(f"images: expected (N, C, H, W), got shape {tuple(images.shape)}")
            if labels is not None:
                labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
                if labels.shape != (len(images),):
                    raise ValueError(f"labels: expected ({len(images)},), got {tuple(labels.shape)}")
            self._images, self._labels, self._loader = images, labels, None
            self._n = len(images)
            return
        if labels is not None:
            raise TypeError("labels come with the images of a Dataset or DataLoader; pass (images, labels) for tensors")
        loader = data
        if not isinstance(data, torch.utils.data.DataLoader):
            if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
                raise TypeError(f"data: expected a tensor, an array, (images, labels), a Dataset or a DataLoader; got "
                                f"{type(data).__name__}")
            loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        try:
            self._n = len(loader.dataset)
        except TypeError:
            raise TypeError("data: a DataLoader over a dataset without len() (an IterableDataset) is not supported; "
                            "the split's size must be known (FeatureNorm draws its jigsaw keys for it)") from None
        self._images = self._labels = None
        self._loader = loader

    def __len__(self) -> int:
        return self._n

    def _batches(self, batch_size: int):
        if self._loader is None:
            for s in range(0, self._n, batch_size):
                yield self._images[s:s + batch_size], None if self._labels is None else self._labels[s:s + batch_size]
            return
        for item in self._loader:
            if isinstance(item, (tuple, list)):
                yield item[0], (item[1] if len(item) > 1 else None)
            else:
                yield item, None

    def index_batches(self, batch_size: int, shuffle: bool = False, **_):
        if shuffle:
            raise ValueError("ImageSource streams its batches in order; it cannot shuffle")
        start = 0
        for x, y in self._batches(batch_size):
            x = torch.as_tensor(x)
            if y is None or (isinstance(y, torch.Tensor) and y.dim() != 1):
                self.labelled = False
                y = torch.full((len(x),), self.fill, dtype=torch.long)
            self._current = (x, torch.as_tensor(y).long())
            yield torch.arange(start, start + len(x))
            start += len(x)

    def prefetched(self, batches: Iterable, depth: int = 2):
        for idx in batches:
            yield idx, None

    def batch(self, idx, augment=None, gen=None, channels_last: bool = False, gathered=None):
        if augment:
            raise ValueError("ImageSource serves its images as they are (no augmentation)")
        x, y = self._current
        if len(x) != len(idx):
            raise RuntimeError("ImageSource.batch: not the batch index_batches just read (batches stream in order)")
        x = x.to(self.device, torch.float32)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device)


def _is_tensor_images(data) -> bool:
    from .data.loader import TensorImages

    return isinstance(data, TensorImages)


def _source(data, *, batch_size: int, device, std, id_split: bool):
    """``data`` as an :class:`ImageSource` (the project's TensorImages as it is: its labels are known)."""
    if isinstance(data, ImageSource) or _is_tensor_images(data):
        return data
    return ImageSource(data, batch_size=batch_size, device=device, std=std, id_split=id_split)


def as_feature_set(data) -> FeatureSet:
    """A :class:`FeatureSet` from a FeatureSet or a mapping with ``logits`` (N, K), ``features`` (N, C),
    optionally ``labels`` (N,) and optional feature-file fields by name (``multiscale``,
    ``block_norms``, ...: :mod:`lffood.fields`); other keys are refused, so that a typo is not
    silently ignored."""
    if isinstance(data, FeatureSet):
        return data
    if not isinstance(data, Mapping):
        raise TypeError(f"expected a FeatureSet or a mapping of arrays (logits, features, labels, ...); "
                        f"got {type(data).__name__}")
    missing = [k for k in ("logits", "features") if k not in data]
    if missing:
        raise ValueError(f"feature arrays: {missing} missing; need logits (N, K) and features (N, C)")
    optional = {n for n, f in registered_fields().items() if f.optional}
    unknown = sorted(set(data) - {"logits", "features", "labels", "preds"} - optional)
    if unknown:
        raise ValueError(f"feature arrays: unknown name(s) {unknown}; known: logits, features, labels and the "
                         f"optional fields {sorted(optional)}")
    logits, features = _numpy(data["logits"]), _numpy(data["features"])
    if logits.ndim != 2 or features.ndim != 2 or len(logits) != len(features):
        raise ValueError(f"feature arrays: logits (N, K) and features (N, C) with the same N; got {logits.shape} and "
                         f"{features.shape}")
    labels = data.get("labels")
    return FeatureSet(logits, features, None if labels is None else _numpy(labels).astype(np.int64),
                      {k: _numpy(v) for k, v in data.items() if k in optional})


# ----------------------------------------------------------------------------- what can run
#: the optional fields extraction computes for a model that has what they need (the other optional
#: fields come from a training objective's own modules: SSOD's OOD head, CSI's joint head)
def _model_can(model: nn.Module) -> dict[str, str | None]:
    """``{request: None if the model can answer it, else why not}`` for every request name."""
    has_map = getattr(model, "has_feature_map", True)
    blocks = model.blocks() if callable(getattr(model, "blocks", None)) else []
    out = {}
    for f in registered_fields().values():
        req = f.requested_by
        if req is None or req in out:
            continue
        if req == "multiscale":
            out[req] = None if has_map else "the last feature map (wrap(model, feature_layer=...))"
        elif req == "block_norms":
            out[req] = None if blocks else "the model's residual blocks (wrap(model, blocks=[...]))"
        else:
            out[req] = "the modules of the training objective that provides it (a model of the workflow's)"
    return out


def _skip_reason(sc: Scorer, *, fields: Mapping[str, str | None], train_fields: Mapping[str, str | None],
                 objective: str | None, network: nn.Module | None, std) -> str | None:
    """Why scorer ``sc`` cannot run here, or None. ``fields``: ``{optional field: None if the scored
    splits have it, else why not}``; ``train_fields`` the same of the ID training split."""
    cls = type(sc)
    if cls.objectives is not None and objective not in cls.objectives:
        return (f"the own score of {list(cls.objectives)} models (pass objective=... to score a model trained "
                "that way)")
    if cls.score_on == "network":
        if network is None:
            return "needs the network (pass a model)"
        if std is None:
            return ("needs the per-channel std of the inputs' normalisation (std=...): its input step is in pixel "
                    "units")
    for name in cls.requires:
        if fields.get(name, "unknown") is not None:
            return f"needs the field '{name}' ({field_spec(name).description}), which needs {fields.get(name)}"
    if cls.needs_fit or cls.uses_train_bank:
        for name in cls.fit_fields():
            if train_fields.get(name, "unknown") is not None:
                return (f"needs the field '{name}' of the ID training split ({field_spec(name).description}), "
                        f"which needs {train_fields.get(name)}")
    return None


def _build(scorers: Iterable[str] | None, params: Mapping[str, Mapping] | None) -> dict[str, Scorer]:
    names = list(scorer_names() if scorers is None else scorers)
    params = dict(params or {})
    for name in [*names, *params]:
        scorer_class(name)  # KeyError naming every registered scorer
    stray = sorted(set(params) - set(names))
    if stray:
        raise ValueError(f"params for scorer(s) {stray}, which are not among the scorers run {names}")
    return {name: build_scorer(name, params.get(name)) for name in names}


def _requests(scorers: Iterable[Scorer]) -> dict:
    """What extraction computes for ``scorers``: their own requests (FeatureNorm's block norms with
    its jigsaw grid) and the request of every optional field they read (CSD's multiscale)."""
    out: dict = {}
    for sc in scorers:
        wanted = dict(sc.extraction_request(sc.params))
        for name in {*sc.requires, *sc.fit_fields()}:
            wanted.setdefault(field_spec(name).requested_by, True)
        for key, settings in wanted.items():
            if key in out and out[key] != settings:
                raise ValueError(f"scorers ask extraction for '{key}' with different settings ({out[key]!r} and "
                                 f"{settings!r}); evaluate them in separate calls")
            out[key] = settings
    return out


# ----------------------------------------------------------------------------- extraction
def _device_of(model: nn.Module, device):
    if device is not None:
        return torch.device(device)
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def extract(model: nn.Module, data, *, role: str = "id_test", requests: Mapping | None = None,
            batch_size: int = 256, device=None, amp: bool = False, std=None) -> FeatureSet:
    """One split through the workflow's extraction (:func:`lffood.extraction.extract_split`): logits,
    penultimate features, labels (None where unknown) and the optional fields ``requests`` ask for
    (``{"multiscale": True}``, FeatureNorm's ``{"block_norms": {...}}``). ``role``: ``id_train``
    (FeatureNorm's jigsaw norms are computed there), ``id_test`` or ``ood``. ``model`` goes through
    :func:`as_classifier` and is moved to ``device`` (default: where its parameters are)."""
    from .extraction import extract_split

    model = as_classifier(model)
    device = _device_of(model, device)
    src = _source(data, batch_size=batch_size, device=device, std=std, id_split=role != "ood")
    out = extract_split(model, src, batch_size=batch_size, device=device, role=role, amp=amp,
                        requests=dict(requests or {}))
    labelled = getattr(src, "labelled", True) and (role == "ood" or (out["labels"] >= 0).all())
    optional = {n for n, f in registered_fields().items() if f.optional}
    return FeatureSet(out["logits"], out["features"], out["labels"] if labelled else None,
                      {k: v for k, v in out.items() if k in optional})


# ----------------------------------------------------------------------------- the one call
@dataclass
class Evaluation:
    """What :func:`score_all` computed: ``scores[scorer][split]`` (``"test"`` and every OOD set; higher =
    more ID), the ID test accuracy (None without labels) and ``skipped`` ``{scorer: reason}``."""

    scores: dict[str, dict[str, np.ndarray]]
    ood_sets: list[str]
    id_acc: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def table(self):
        return metrics_table(self.scores, self.ood_sets, self.id_acc, self.skipped)


def metrics_table(scores: Mapping[str, Mapping[str, np.ndarray]], ood_sets: Sequence[str], id_acc: float | None = None,
                  skipped: Mapping[str, str] | None = None):
    """The tidy table of the workflow's metrics files (:func:`lffood.pipeline.run_metrics`): one row per
    scorer x OOD set, :func:`lffood.metrics.ood_metrics` of the ``"test"`` scores against the set's,
    fractions; ``id_acc`` where known. ``attrs["skipped"]``: the scorers that did not run, and why."""
    import pandas as pd

    rows = [{"scorer": name, "ood_set": o, **metrics.ood_metrics(s["test"], s[o]),
             **({} if id_acc is None else {"id_acc": id_acc})} for name, s in scores.items() for o in ood_sets]
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "id_acc" or id_acc is not None])
    df.attrs["skipped"] = dict(skipped or {})
    return df


def _fit(sc: Scorer, train: FeatureSet | None, head: Head) -> str | None:
    """Fit ``sc`` (statistics, KNN's bank); the reason it cannot be fitted, or None."""
    try:
        sc.fit(train, head)
    except ValueError as exc:  # e.g. Mahalanobis and LINe without ID training labels
        return f"cannot be fitted: {exc}"
    return None


def score_all(model: nn.Module | None = None, *, id_train, id_test, ood: Mapping[str, Any], head=None,
              scorers: Iterable[str] | None = None, params: Mapping[str, Mapping] | None = None,
              objective: str | None = None, batch_size: int = 256, device=None, std: Sequence[float] | None = None,
              amp: bool = False) -> Evaluation:
    """The scores behind :func:`evaluate` (same arguments): every scorer fitted on ``id_train`` and run
    on ``id_test`` and each OOD set."""
    if not ood:
        raise ValueError("ood: name at least one OOD set, e.g. ood={'textures': textures_images}")
    if "test" in ood:
        raise ValueError("ood: 'test' names the ID test split; call the OOD set something else")
    built = _build(scorers, params)
    skipped: dict[str, str] = {}
    if model is not None:
        if head is not None:
            raise ValueError("head: the model's own head is used; pass head only with precomputed features")
        model = as_classifier(model)
        device = _device_of(model, device)
        head = _head_of(model)
        if std is None and _is_tensor_images(id_test):
            std = id_test.std
        can = _model_can(model)
        fields = {n: can[f.requested_by] for n, f in registered_fields().items() if f.optional}
        train_fields = fields
    else:
        if head is None:
            raise ValueError("head: precomputed features need the linear head (weight, bias) that made the logits")
        head = as_head(head)
        id_train, id_test = as_feature_set(id_train), as_feature_set(id_test)
        ood = {name: as_feature_set(v) for name, v in ood.items()}
        scored = [id_test, *ood.values()]
        fields = {n: None if all(n in fs.extras for fs in scored) else "arrays of that name in every scored split"
                  for n, f in registered_fields().items() if f.optional}
        train_fields = {n: None if n in id_train.extras else "an array of that name in the ID training split"
                        for n, f in registered_fields().items() if f.optional}
    run: dict[str, Scorer] = {}
    for name, sc in built.items():
        why = _skip_reason(sc, fields=fields, train_fields=train_fields, objective=objective, network=model, std=std)
        if why is None:
            run[name] = sc
        else:
            skipped[name] = why
    if model is not None:
        kw = dict(batch_size=batch_size, device=device, amp=amp, std=std, requests=_requests(run.values()))
        id_train = extract(model, id_train, role="id_train", **kw)
        test_src = _source(id_test, batch_size=batch_size, device=device, std=std, id_split=True)
        ood_src = {n: _source(v, batch_size=batch_size, device=device, std=std, id_split=False) for n, v in ood.items()}
        id_test = extract(model, test_src, role="id_test", **kw)
        ood = {n: extract(model, src, role="ood", **kw) for n, src in ood_src.items()}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, sc in run.items():
        why = _fit(sc, id_train, head)
        if why is not None:
            skipped[name] = why
            continue
        if sc.score_on == "network":
            scores[name] = {split: sc.score_network(model, src, batch_size=batch_size, device=device)
                            for split, src in {"test": test_src, **ood_src}.items()}
        else:
            scores[name] = {split: sc.score(fs) for split, fs in {"test": id_test, **ood}.items()}
    for name, why in skipped.items():
        log.info("skipped %s: %s", name, why)
    acc = None if id_test.labels is None else metrics.accuracy(id_test.logits.argmax(1), id_test.labels)
    return Evaluation(scores, list(ood), acc, skipped)


def evaluate(model: nn.Module | None = None, *, id_train, id_test, ood: Mapping[str, Any], head=None,
             scorers: Iterable[str] | None = None, params: Mapping[str, Mapping] | None = None,
             objective: str | None = None, batch_size: int = 256, device=None, std: Sequence[float] | None = None,
             amp: bool = False):
    """Fit every applicable scorer on ``id_train`` and return the OOD metrics of ``id_test`` against
    each set of ``ood`` (``{name: data}``) as a tidy DataFrame: scorer, ood_set, auroc, fpr95,
    aupr_in, aupr_out (fractions, ID positive, FPR at 95% TPR) and id_acc (where ``id_test`` has
    labels): the workflow's metrics, from :func:`lffood.metrics.ood_metrics`.

    * With a ``model`` (a torch classifier: :func:`wrap` it first unless it is a torchvision ResNet or
      a project backbone): the data are images (see the module's docstring); it runs on ``device``
      (default: where its parameters are), ``batch_size`` at a time, with ``amp`` on CUDA; ``std``:
      the per-channel std of the inputs' normalisation, which ODIN needs.
    * Without: the data are :class:`FeatureSet` objects or mappings of arrays (``logits``,
      ``features``, ``labels``, optional fields by name) and ``head`` the linear classifier (a
      :class:`Head`, an nn.Linear, ``(weight, bias)``).

    ``scorers``: names from the registry (``lffood scorers``; default: every one, in table order);
    ``params``: ``{scorer: {parameter: value}}`` over their defaults; ``objective``: the model's training
    objective, for the methods' own scores (``ssd_plus``, ``cider``, ``npos``). Scorers that cannot run
    are skipped (logged at INFO, and ``table.attrs["skipped"]``)."""
    return score_all(model, id_train=id_train, id_test=id_test, ood=ood, head=head, scorers=scorers, params=params,
                     objective=objective, batch_size=batch_size, device=device, std=std, amp=amp).table()


# ----------------------------------------------------------------------------- detectors
class Detector:
    """One registered scorer, for your own loop: ``fit(id_train)`` once, then ``score(batch)`` ->
    numpy, one score per sample, higher = more in-distribution.

    With a ``model`` the inputs are images (a tensor batch, an ``(images, labels)`` pair, a Dataset or
    a DataLoader) run through the workflow's extraction; without, they are feature arrays
    (:func:`as_feature_set`) and ``fit`` takes the ``head`` too. Scorers that fit nothing and keep no
    training bank (MSP, Energy, ODIN) score without ``fit``."""

    def __init__(self, name: str, *, model: nn.Module | None = None, batch_size: int = 256, device=None,
                 std: Sequence[float] | None = None, amp: bool = False, objective: str | None = None, **params):
        self.scorer = build_scorer(name, params)
        self.model = None if model is None else as_classifier(model)
        self.batch_size, self.std, self.amp = batch_size, std, amp
        self.device = None if model is None else _device_of(self.model, device)
        self._fitted = False
        if self.model is not None:
            fields = {n: _model_can(self.model)[f.requested_by] for n, f in registered_fields().items() if f.optional}
            why = _skip_reason(self.scorer, fields=fields, train_fields=fields, objective=objective,
                               network=self.model, std=std)
            if why is not None:
                raise ValueError(f"scorer '{name}' cannot run on this model: {why}")
            self.scorer.head = _head_of(self.model)
        elif self.scorer.score_on == "network":
            raise ValueError(f"scorer '{name}' needs the network: detector('{name}', model=..., std=...)")

    @property
    def name(self) -> str:
        return self.scorer.name

    def _features(self, data, role: str) -> FeatureSet:
        if self.model is None:
            return as_feature_set(data)
        return extract(self.model, data, role=role, requests=_requests([self.scorer]), batch_size=self.batch_size,
                       device=self.device, amp=self.amp, std=self.std)

    def fit(self, id_train, head=None) -> "Detector":
        """Fit the scorer's ID statistics (and keep KNN's / CSD's bank) from the ID training split:
        images with a model, feature arrays and ``head`` without."""
        if self.model is not None and head is not None:
            raise ValueError("head: the model's own head is used; pass head only with feature arrays")
        head = _head_of(self.model) if self.model is not None else as_head(head) if head is not None else None
        if head is None and (self.scorer.needs_fit or self.scorer.uses_train_bank):
            raise ValueError(f"{self.name}.fit: pass the linear head (weight, bias) with the feature arrays")
        train = None if self.scorer.score_on == "network" and not self.scorer.needs_fit else \
            self._features(id_train, "id_train")
        self.scorer.fit(train, head)
        self._fitted = True
        return self

    def score(self, batch) -> np.ndarray:
        """One score per sample of ``batch`` (float64; higher = more in-distribution)."""
        if not self._fitted and (self.scorer.needs_fit or self.scorer.uses_train_bank):
            raise RuntimeError(f"detector '{self.name}' fits ID statistics: call fit(id_train) first")
        if self.scorer.score_on == "network":
            src = _source(batch, batch_size=self.batch_size, device=self.device, std=self.std, id_split=False)
            return self.scorer.score_network(self.model, src, batch_size=self.batch_size, device=self.device)
        return np.asarray(self.scorer.score(self._features(batch, "ood")), dtype=np.float64)


def detector(name: str, **kwargs) -> Detector:
    """``detector("vim")``, ``detector("react", percentile=95)``, ``detector("knn", model=net, k=10)``:
    the registered scorer ``name`` (``lffood scorers``) as a :class:`Detector`; keyword arguments are
    the Detector's settings (model, batch_size, device, std, amp, objective) and the scorer's parameters."""
    return Detector(name, **kwargs)
