"""The embedded benchmark: a small OOD benchmark generated offline from data inside installed packages.

It models the premise of the LFF paper (Fig. 1): ID objects (scikit-learn's handwritten digits
0..K-1) pasted on scene backgrounds (crops of scikit-learn's and matplotlib's sample photographs
and terrain maps, plus procedural textures), where each class prefers one background family
(``p_match``), so a cross-entropy model learns to use background evidence. The OOD sets share
those backgrounds where the paper's do:

* ``backgrounds``: ID background scenes with no digit (like LSUN/Places sharing ImageNet scenes);
* ``novel_digits``: unseen digit classes (8, 9) on ID-like backgrounds (near OOD);
* ``textures``: procedural texture types that never occur in the ID background pool (like DTD);
* ``far``: typeset letters (matplotlib's DejaVu fonts) on MRI slices and colour fields: neither
  ID objects nor ID backgrounds (far OOD).

Everything is vectorised over the batch (``torch.nn.functional.grid_sample``) and seeded, so the
same seed gives byte-identical splits.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..names import EMBEDDED_OOD_SETS as OOD_SETS  # noqa: F401  (re-exported)
from ..names import EMBEDDED_SPLITS as SPLITS  # noqa: F401  the splits the generator writes, ID first
from .arrays import OOD_LABEL, Split

#: Background families of the ID pool, one per ID class (class k prefers family k).
ID_FAMILIES = ("china", "flower", "grace", "terrain", "topo", "stripes", "checker", "noise")
#: Texture families held out of the ID pool (the ``textures`` OOD set).
OOD_TEXTURES = ("dots", "plaid", "rings")

DEFAULTS = {
    "image_size": 16,
    "num_classes": 8,
    "train_per_class": 600,
    "test_per_class": 100,
    "ood_size": 500,
    "p_match": 0.75,
    "digit_scale": [0.55, 0.8],
    "crop_scale": [0.08, 0.3],
}


# ----------------------------------------------------------------------------- sources
def _mpl_sample(name: str) -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", name)


def _colormap(values: np.ndarray, cmap: str) -> np.ndarray:
    import matplotlib

    v = values.astype(np.float64)
    v = (v - v.min()) / max(v.max() - v.min(), 1e-12)
    return matplotlib.colormaps[cmap](v)[..., :3].astype(np.float32)


def load_sources() -> dict[str, torch.Tensor]:
    """Source pictures (3, H, W) in [0, 1] from scikit-learn and matplotlib package data."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    grace = np.asarray(Image.open(_mpl_sample("grace_hopper.jpg")).convert("RGB"))
    terrain = _colormap(np.load(_mpl_sample("jacksboro_fault_dem.npz"))["elevation"], "terrain")
    topo = _colormap(np.load(_mpl_sample("topobathy.npz"))["topo"], "gist_earth")
    with gzip.open(_mpl_sample("s1045.ima.gz")) as fh:
        mri = np.frombuffer(fh.read(), dtype=">u2").reshape(256, 256)
    mri = _colormap(mri, "bone")

    def t(a):
        a = np.asarray(a)
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)

    return {"china": t(china), "flower": t(flower), "grace": t(grace), "terrain": t(terrain),
            "topo": t(topo), "mri": t(mri)}


def letter_glyphs(size: int = 8, oversample: int = 4) -> torch.Tensor:
    """Latin letters rendered with matplotlib's bundled DejaVu fonts as (N, size, size) coverage
    masks in [0, 1] (the glyphs of the ``far`` OOD set; rasterised by point-in-path tests)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    n = size * oversample
    c = (np.arange(n) + 0.5) / n
    grid = np.stack(np.meshgrid(c, c[::-1]), -1).reshape(-1, 2)  # y up, as in font coordinates
    masks = []
    for family in ("DejaVu Sans", "DejaVu Serif"):
        for ch in "ABCDEFGHKLMNPQRTUVWXYZabdefhkmnpqrtwy":
            path = TextPath((0, 0), ch, size=1.0, prop=FontProperties(family=family, weight="bold"))
            v = path.vertices
            lo, hi = v.min(0), v.max(0)
            scale = (hi - lo).max() * 1.15
            centre = (lo + hi) / 2
            pts = (grid - 0.5) * scale + centre
            inside = path.contains_points(pts).reshape(n, n).astype(np.float32)
            masks.append(inside.reshape(size, oversample, size, oversample).mean((1, 3)))
    return torch.from_numpy(np.stack(masks))


# ----------------------------------------------------------------------------- sampling helpers
def _u(n, lo, hi, g):
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _grid(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1], shape (n, size, size) each."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return yy.expand(n, size, size), xx.expand(n, size, size)


def crop_resize(src: torch.Tensor, n: int, size: int, scale: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    """``n`` random square crops (side = scale * min(H, W)), random flip, resized to ``size``."""
    _, h, w = src.shape
    side = _u(n, scale[0], scale[1], g) * min(h, w)
    sx, sy = side / w, side / h  # half-extent in normalised coords is side/w
    cx = _u(n, -1, 1, g) * (1 - sx)
    cy = _u(n, -1, 1, g) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    return F.grid_sample(src.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False)


def _two_colours(n, g):
    c1, c2 = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
    return c1[:, :, None, None], c2[:, :, None, None]


def _mix(mask, n, g):
    c1, c2 = _two_colours(n, g)
    return c1 * mask[:, None] + c2 * (1 - mask[:, None])


def texture(kind: str, n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Procedural textures (n, 3, size, size) in [0, 1]."""
    yy, xx = _grid(n, size)
    ang = _u(n, 0, math.pi, g)[:, None, None]
    u = xx * torch.cos(ang) + yy * torch.sin(ang)
    v = -xx * torch.sin(ang) + yy * torch.cos(ang)
    freq = _u(n, 1.5, 4.0, g)[:, None, None] * math.pi
    phase = _u(n, 0, 2 * math.pi, g)[:, None, None]
    if kind == "stripes":
        mask = torch.sigmoid(6 * torch.sin(freq * u + phase))
    elif kind == "checker":
        mask = torch.sigmoid(6 * torch.sin(freq * u + phase) * torch.sin(freq * v + phase))
    elif kind == "dots":
        cell = 2 / _u(n, 2.0, 4.0, g)[:, None, None]
        du = torch.remainder(u + phase, cell) - cell / 2
        dv = torch.remainder(v + phase, cell) - cell / 2
        mask = torch.sigmoid((0.3 * cell - torch.sqrt(du ** 2 + dv ** 2)) * 20 / cell)
    elif kind == "plaid":
        mask = 0.5 + 0.25 * torch.sin(freq * u + phase) + 0.25 * torch.sin(1.7 * freq * v)
    elif kind == "rings":
        cy, cx = _u(n, -1, 1, g)[:, None, None], _u(n, -1, 1, g)[:, None, None]
        r = torch.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        mask = torch.sigmoid(6 * torch.sin(2 * freq * r + phase))
    elif kind == "noise":
        low = torch.rand(n, 3, 4, 4, generator=g)
        field = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
        return (field + 0.15 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    elif kind == "colour_field":
        low = torch.rand(n, 3, 2, 2, generator=g)
        return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    else:
        raise ValueError(f"unknown texture kind {kind!r}")
    return _mix(mask, n, g).clamp(0, 1)


def backgrounds(families: torch.Tensor, size: int, sources: Mapping[str, torch.Tensor],
                crop_scale, g: torch.Generator) -> torch.Tensor:
    """One background per entry of ``families`` (indices into ID_FAMILIES)."""
    out = torch.empty(len(families), 3, size, size)
    for f, name in enumerate(ID_FAMILIES):
        idx = (families == f).nonzero().flatten()
        if len(idx) == 0:
            continue
        if name in sources:
            out[idx] = crop_resize(sources[name], len(idx), size, crop_scale, g)
        else:
            out[idx] = texture(name, len(idx), size, g)
    return out


def paste_digits(bg: torch.Tensor, digits: torch.Tensor, scale, g: torch.Generator) -> torch.Tensor:
    """Alpha-composite 8x8 digit glyphs (n, 8, 8) in [0, 1] onto backgrounds, contrasting colour."""
    n, _, size, _ = bg.shape
    s = _u(n, scale[0], scale[1], g)  # fraction of the image the glyph spans
    rot = _u(n, -0.3, 0.3, g)
    tx, ty = _u(n, -1, 1, g) * (1 - s), _u(n, -1, 1, g) * (1 - s)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(rot) / s, -torch.sin(rot) / s
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(rot) / s, torch.cos(rot) / s
    theta[:, 0, 2], theta[:, 1, 2] = -tx / s, -ty / s
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
    alpha = F.grid_sample(digits[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # a contrasting halo (dilated glyph) keeps the digit readable on cluttered backgrounds
    halo = F.max_pool2d(alpha, 3, stride=1, padding=1)
    bright = torch.rand(n, generator=g) < 0.5
    fg_base = torch.where(bright[:, None], torch.full((n, 3), 0.8), torch.zeros(n, 3))
    colour = (fg_base + 0.2 * torch.rand(n, 3, generator=g))[:, :, None, None]
    halo_colour = (1.0 - fg_base - 0.2 * torch.rand(n, 3, generator=g)).clamp(0, 1)[:, :, None, None]
    out = bg * (1 - halo) + halo_colour * halo
    return out * (1 - alpha) + colour * alpha


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ----------------------------------------------------------------------------- the benchmark
def generate(params: Mapping | None = None, seed: int = 0) -> dict[str, Split]:
    """Generate every split of the embedded benchmark; returns ``{split name: Split}``."""
    p = {**DEFAULTS, **(params or {})}
    size, k = int(p["image_size"]), int(p["num_classes"])
    if not 2 <= k <= 8:
        raise ValueError("embedded benchmark: num_classes must be in 2..8 (digits 8 and 9 are the novel OOD classes)")
    g = torch.Generator().manual_seed(int(seed))
    from sklearn.datasets import load_digits

    digits = load_digits()
    glyphs = torch.from_numpy(digits.images.astype(np.float32) / 16.0)
    target = torch.from_numpy(digits.target)
    sources = load_sources()

    # hold out 30% of each class's glyph exemplars for the test split
    train_pool, test_pool = {}, {}
    for c in range(10):
        idx = (target == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        cut = int(round(0.7 * len(idx)))
        train_pool[c], test_pool[c] = idx[:cut], idx[cut:]

    def id_split(per_class: int, pool) -> tuple[torch.Tensor, np.ndarray]:
        labels = torch.arange(k).repeat_interleave(per_class)
        n = len(labels)
        match = torch.rand(n, generator=g) < p["p_match"]
        fam = torch.where(match, labels % len(ID_FAMILIES), torch.randint(0, len(ID_FAMILIES), (n,), generator=g))
        bg = backgrounds(fam, size, sources, p["crop_scale"], g)
        glyph_idx = torch.cat([pool[c][torch.randint(0, len(pool[c]), (per_class,), generator=g)] for c in range(k)])
        img = paste_digits(bg, glyphs[glyph_idx], p["digit_scale"], g)
        perm = torch.randperm(n, generator=g)
        return img[perm], labels[perm].numpy()

    def random_families(n):
        return torch.randint(0, len(ID_FAMILIES), (n,), generator=g)

    m = int(p["ood_size"])
    classes = [str(c) for c in range(k)]
    out: dict[str, Split] = {}
    train_img, train_lab = id_split(int(p["train_per_class"]), train_pool)
    test_img, test_lab = id_split(int(p["test_per_class"]), test_pool)
    mean = train_img.mean(dim=(0, 2, 3)).tolist()
    std = train_img.std(dim=(0, 2, 3)).tolist()
    common = {"benchmark": "embedded", "classes": classes, "image_size": size, "seed": int(seed)}
    out["train"] = Split(_to_uint8(train_img), train_lab, {**common, "role": "id_train", "mean": mean, "std": std})
    out["test"] = Split(_to_uint8(test_img), test_lab, {**common, "role": "id_test"})

    ood: dict[str, tuple[torch.Tensor, str]] = {}
    ood["backgrounds"] = (backgrounds(random_families(m), size, sources, p["crop_scale"], g),
                          "ID background scenes without any digit")
    novel = torch.cat([test_pool[8], test_pool[9], train_pool[8], train_pool[9]])
    bg = backgrounds(random_families(m), size, sources, p["crop_scale"], g)
    ood["novel_digits"] = (paste_digits(bg, glyphs[novel[torch.randint(0, len(novel), (m,), generator=g)]],
                                        p["digit_scale"], g), "digits 8 and 9 (unseen classes) on ID backgrounds")
    kinds = torch.randint(0, len(OOD_TEXTURES), (m,), generator=g)
    tex = torch.empty(m, 3, size, size)
    for i, kind in enumerate(OOD_TEXTURES):
        idx = (kinds == i).nonzero().flatten()
        tex[idx] = texture(kind, len(idx), size, g)
    ood["textures"] = (tex, f"procedural textures absent from the ID pool: {', '.join(OOD_TEXTURES)}")
    half = m // 2
    tint = 0.4 + 0.6 * torch.rand(half, 3, 1, 1, generator=g)
    far_bg = torch.cat([crop_resize(sources["mri"], half, size, (0.2, 0.6), g) * tint,
                        texture("colour_field", m - half, size, g)])
    letters = letter_glyphs()
    far = paste_digits(far_bg, letters[torch.randint(0, len(letters), (m,), generator=g)], p["digit_scale"], g)
    ood["far"] = (far[torch.randperm(m, generator=g)], "typeset letters on colour-tinted MRI slices and smooth colour fields")
    for name, (img, desc) in ood.items():
        out[name] = Split(_to_uint8(img), np.full(m, OOD_LABEL, dtype=np.int64),
                          {**common, "role": "ood", "description": desc})
    return out
