"""FeatureNorm (Yu et al., CVPR 2023; gist-ailab/block-selection-for-OOD-detection). Scores cached features.

FeatureNorm of a block = channel mean of the spatial L2 norm of the block's ReLU output. The block
is the one with the largest NormRatio = mean FeatureNorm(ID training images) / mean FeatureNorm
(their 3 x 3 jigsaw-shuffled versions); the selection (ratios and chosen index) is the scorer's
statistics artifact. Blocks come from ``model.blocks()`` (ordered residual blocks, stem excluded);
``block`` is a 0-based index into that list (the reference's "block 6 of 8" for ResNet-18 is 5).

The network runs once, in extraction: the scorer's :meth:`FeatureNorm.extraction_request` asks it
for every block's FeatureNorm of every image (``block_norms``) and, on the ID training split, of
the jigsaw-shuffled images (``jigsaw_block_norms``), two feature-file fields registered here
(:mod:`lffood.fields`) and recorded by :class:`BlockNormRecorder` during extraction's own forward
pass (:class:`BlockNormRecording`, one per split). Fitting and scoring then read the feature file,
like every other cached-feature scorer, and a change of ``block`` refits and rescores without
running the network.

Usage::

    stats = build_scorer("featurenorm").fit(train, head).stats   # train: FeatureSet with both fields
    scores = build_scorer("featurenorm").load(head, stats).score(test)

torch is imported inside the functions: ``lffood.scorers`` stays importable without it.
"""

from __future__ import annotations

import numpy as np

from ..checks import Issue, Param
from ..fields import Field, register_field
from .base import Scorer, register


def jigsaw(x, grid: int, gen=None, keys=None):
    """Shuffle the ``grid x grid`` patches of each image independently. When the side is not a
    multiple of ``grid`` the patches have side ``H // grid`` and the remaining border rows/columns
    stay in place. The permutation of image i sorts ``keys[i]`` ((B, grid**2) uniform numbers, drawn
    from ``gen`` when not given): drawn once per split, the shuffles do not depend on the batch size."""
    import torch

    b, c, h, w = x.shape
    ph, pw = h // grid, w // grid
    if ph < 1 or pw < 1:
        raise ValueError(f"jigsaw_grid={grid} is larger than the image ({h} x {w})")
    g2 = grid * grid
    region = x[:, :, : grid * ph, : grid * pw]
    patches = region.reshape(b, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, g2, c, ph, pw)
    keys = torch.rand(b, g2, generator=gen) if keys is None else keys
    if keys.shape != (b, g2):
        raise ValueError(f"jigsaw: keys of shape {tuple(keys.shape)}, expected ({b}, {g2})")
    perm = torch.argsort(keys, dim=1).to(x.device)
    patches = patches[torch.arange(b, device=x.device)[:, None], perm]
    region = patches.reshape(b, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, grid * ph, grid * pw)
    out = x.clone()
    out[:, :, : grid * ph, : grid * pw] = region
    return out


def feature_norm(activation):
    """(B, C, H, W) -> (B,): mean over channels of the spatial L2 norm of relu(activation)."""
    import torch

    return torch.relu(activation.float()).flatten(2).norm(dim=2).mean(1)


class BlockNormRecorder:
    """Forward hooks that record the FeatureNorm of each of ``blocks`` in every forward pass run while
    the recorder is active (``with BlockNormRecorder(model.blocks()) as rec: model(x); rec.take()``):
    extraction collects FeatureNorm's block norms from its own forward pass."""

    def __init__(self, blocks):
        self.blocks = list(blocks)
        self._found: list = [None] * len(self.blocks)
        self._hooks: list = []

    def __enter__(self) -> "BlockNormRecorder":
        self._hooks = [blk.register_forward_hook(lambda _m, _i, out, j=j: self._found.__setitem__(j, feature_norm(out)))
                       for j, blk in enumerate(self.blocks)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def take(self):
        """(B, n_blocks) float32: the block norms of the last forward pass."""
        import torch

        if any(f is None for f in self._found):
            raise RuntimeError("BlockNormRecorder: no forward pass ran through every block since the last take()")
        out, self._found = torch.stack(self._found, 1), [None] * len(self.blocks)
        return out


def block_norms(model, x, blocks=None):
    """FeatureNorm of every block in ``blocks`` (default: all of ``model.blocks()``): (n_blocks, B)."""
    import torch

    with BlockNormRecorder(model.blocks() if blocks is None else blocks) as rec, torch.no_grad():
        model(x)
        return rec.take().T


class BlockNormRecording:
    """One split's extraction of FeatureNorm's fields (the state of both, :mod:`lffood.fields`): the
    recorder's hooks on the model's blocks, and the jigsaw keys of the request's grid and seed, drawn
    once for the split's images (so the batch size does not matter)."""

    def __init__(self, split):
        self.recorder = BlockNormRecorder(split.model.blocks())
        self.grid, self.seed, self.size = split.settings["jigsaw_grid"], split.settings["jigsaw_seed"], split.size
        self._keys = None

    def __enter__(self) -> "BlockNormRecording":
        self.recorder.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.recorder.__exit__(*exc)

    def keys(self, start: int, n: int):
        import torch

        if self._keys is None:
            gen = torch.Generator().manual_seed(self.seed)
            self._keys = torch.rand(self.size, self.grid * self.grid, generator=gen)
        return self._keys[start:start + n]


def _jigsaw_block_norms(batch, rec: BlockNormRecording):
    batch.forward(jigsaw(batch.x, rec.grid, keys=rec.keys(batch.start, len(batch.x))))
    return rec.recorder.take()


register_field(Field("block_norms", np.float32, ("N", "B"),
                     "FeatureNorm of each of the model's B blocks (models scored with FeatureNorm)",
                     lambda batch, rec: rec.recorder.take(), optional=True, setup=BlockNormRecording))
register_field(Field("jigsaw_block_norms", np.float32, ("N", "B"),
                     "the same of the images' jigsaw-shuffled versions (FeatureNorm's block selection)",
                     _jigsaw_block_norms, roles=("id_train",), optional=True, request="block_norms",
                     setup=BlockNormRecording))


@register("featurenorm", "FeatureNorm", order=100, in_paper=True)
class FeatureNorm(Scorer):
    """FeatureNorm of the block selected by the ID vs jigsaw norm ratio (or a fixed ``block``)."""

    defaults = {"block": None, "jigsaw_grid": 3}
    needs_fit = True
    fit_keys = ("block", "jigsaw_grid")
    requires = ("block_norms",)
    fit_requires = ("block_norms", "jigsaw_block_norms")
    #: seed of the jigsaw permutations (part of the artifact's provenance, not a tuning knob)
    jigsaw_seed = 0

    params_spec = {"block": Param("int", 0, null=True, why="a 0-based index into model.blocks(); null: select by "
                                                          "the norm ratio"),
                   "jigsaw_grid": Param("int", 2, why="at most the side of the training images; 1 shuffles nothing")}

    @classmethod
    def check(cls, params, facts=None):
        """``block`` a block of the benchmark's model, ``jigsaw_grid`` at most the image side."""
        issues = super().check(params, facts)
        if issues or facts is None:
            return issues
        block, n_blocks = params["block"], facts.blocks
        if block is not None and n_blocks is not None and block >= n_blocks:
            issues.append(Issue("block", f"{block} is not a block of model.arch '{facts.arch}', which has {n_blocks} "
                                         f"(0-based: 0..{n_blocks - 1}); choose one, or null to select by the norm "
                                         "ratio.", ("blocks",)))
        grid = params["jigsaw_grid"]
        if facts.side is not None and grid > facts.side:
            issues.append(Issue("jigsaw_grid", f"{grid} is larger than the {facts.side} x {facts.side} training "
                                               "images; lower it (reference: 3).", ("side",)))
        return issues

    @classmethod
    def extraction_request(cls, params):
        return {"block_norms": {"jigsaw_grid": params["jigsaw_grid"], "jigsaw_seed": cls.jigsaw_seed}}

    def compute_stats(self, train, head):
        id_norm = np.asarray(train.extras["block_norms"], dtype=np.float64).mean(0)
        jig_norm = np.asarray(train.extras["jigsaw_block_norms"], dtype=np.float64).mean(0)
        ratios = id_norm / np.maximum(jig_norm, 1e-12)
        block = self.params["block"]
        if block is None:
            block = int(np.argmax(ratios))
        elif block >= len(ratios):
            raise ValueError(f"FeatureNorm: block {block} out of range; the model has {len(ratios)} blocks "
                             f"(0-based indices 0..{len(ratios) - 1})")
        return {"block": np.asarray(block), "ratios": ratios, "id_norm": id_norm, "jigsaw_norm": jig_norm}

    def score(self, data):
        return np.asarray(data.extras["block_norms"][:, int(self.stats["block"])], dtype=np.float64)
