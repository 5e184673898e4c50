"""FeatureNorm (Yu et al., CVPR 2023; gist-ailab/block-selection-for-OOD-detection). Needs the network.

FeatureNorm of a block = channel mean of the spatial L2 norm of the block's ReLU output. The block
is the one with the largest NormRatio = mean FeatureNorm(ID training images) / mean FeatureNorm
(their 3 x 3 jigsaw-shuffled versions); the selection (ratios and chosen index) is the scorer's
statistics artifact. Blocks come from ``model.blocks()`` (ordered residual blocks, stem excluded);
``block`` is a 0-based index into that list (the reference's "block 6 of 8" for ResNet-18 is 5).
torch is imported inside the functions: ``lffood.scorers`` stays importable without it.
"""

from __future__ import annotations

import numpy as np

from .base import Scorer, register


def jigsaw(x, grid: int, gen=None):
    """Shuffle the ``grid x grid`` patches of each image independently. When the side is not a
    multiple of ``grid`` the patches have side ``H // grid`` and the remaining border rows/columns
    stay in place."""
    import torch

    b, c, h, w = x.shape
    ph, pw = h // grid, w // grid
    if ph < 1 or pw < 1:
        raise ValueError(f"jigsaw_grid={grid} is larger than the image ({h} x {w})")
    g2 = grid * grid
    region = x[:, :, : grid * ph, : grid * pw]
    patches = region.reshape(b, c, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, g2, c, ph, pw)
    perm = torch.argsort(torch.rand(b, g2, generator=gen), dim=1).to(x.device)
    patches = patches[torch.arange(b, device=x.device)[:, None], perm]
    region = patches.reshape(b, grid, grid, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, grid * ph, grid * pw)
    out = x.clone()
    out[:, :, : grid * ph, : grid * pw] = region
    return out


def feature_norm(activation):
    """(B, C, H, W) -> (B,): mean over channels of the spatial L2 norm of relu(activation)."""
    import torch

    return torch.relu(activation.float()).flatten(2).norm(dim=2).mean(1)


def block_norms(model, x, blocks=None):
    """FeatureNorm of every block in ``blocks`` (default: all of ``model.blocks()``): (n_blocks, B)."""
    import torch

    blocks = list(model.blocks()) if blocks is None else blocks
    found = [None] * len(blocks)
    hooks = [blk.register_forward_hook(lambda _m, _i, out, j=j: found.__setitem__(j, feature_norm(out)))
             for j, blk in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(found)


@register("featurenorm", "FeatureNorm")
class FeatureNorm(Scorer):
    """FeatureNorm of the block selected by the ID vs jigsaw norm ratio (or a fixed ``block``)."""

    defaults = {"block": None, "jigsaw_grid": 3}
    needs_fit = True
    fit_keys = ("block", "jigsaw_grid")
    fit_on = "network"
    score_on = "network"
    #: seed of the jigsaw permutations (part of the artifact's provenance, not a tuning knob)
    jigsaw_seed = 0

    @classmethod
    def check_params(cls, params):
        problems = super().check_params(params)
        b, g = params.get("block"), params.get("jigsaw_grid")
        if b is not None and (not isinstance(b, int) or isinstance(b, bool) or b < 0):
            problems.append(f"parameter 'block' must be a 0-based block index or null, got {b!r}")
        if not isinstance(g, int) or isinstance(g, bool) or g < 2:
            problems.append(f"parameter 'jigsaw_grid' must be an integer >= 2, got {g!r}")
        return problems

    def fit_network(self, model, train, *, batch_size: int, device) -> "FeatureNorm":
        import torch

        model.eval().to(device)
        blocks = list(model.blocks())
        gen = torch.Generator().manual_seed(self.jigsaw_seed)
        id_sum = torch.zeros(len(blocks), dtype=torch.float64)
        jig_sum = torch.zeros(len(blocks), dtype=torch.float64)
        for idx in train.index_batches(batch_size):
            x, _ = train.batch(idx)
            id_sum += block_norms(model, x, blocks).double().sum(1).cpu()
            jig_sum += block_norms(model, jigsaw(x, self.params["jigsaw_grid"], gen), blocks).double().sum(1).cpu()
        n = len(train)
        id_norm, jig_norm = (id_sum / n).numpy(), (jig_sum / n).numpy()
        ratios = id_norm / np.maximum(jig_norm, 1e-12)
        block = self.params["block"]
        if block is None:
            block = int(np.argmax(ratios))
        elif block >= len(blocks):
            raise ValueError(f"FeatureNorm: block {block} out of range; the model has {len(blocks)} blocks "
                             f"(0-based indices 0..{len(blocks) - 1})")
        self.stats = {"block": np.asarray(block), "ratios": ratios, "id_norm": id_norm, "jigsaw_norm": jig_norm}
        return self

    def score_network(self, model, data, *, batch_size: int, device) -> np.ndarray:
        import torch

        model.eval().to(device)
        blk = list(model.blocks())[int(self.stats["block"])]
        out = []
        for idx in data.index_batches(batch_size):
            x, _ = data.batch(idx)
            out.append(block_norms(model, x, [blk])[0].cpu())
        return torch.cat(out).double().numpy()
