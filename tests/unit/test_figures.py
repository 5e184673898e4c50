"""Figures: what each panel shows equals the data behind it, every figure is 7 inches wide with no
text under 7 pt, clipped or overlapping, PNG and PDF files are valid, and the t-SNE data are the
model's own vectors with LFF's background selection."""

import re
import struct

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lffood import h5schema, integrity  # noqa: E402
from lffood.data.arrays import Split, save_split  # noqa: E402
from lffood.errors import LffoodError  # noqa: E402
from lffood.metrics import auroc  # noqa: E402
from lffood.report import figures  # noqa: E402
from lffood.report.figures import (DPI, MIN_FONT_PT, OKABE_ITO, WIDTH_IN, auroc_bar_table,  # noqa: E402
                                   heatmap_selection, layout_problems, map_shape, method_colours, plot_auroc_bars,
                                   plot_feature_norms, plot_heatmaps, plot_local_norms, plot_tsne, tsne_embedding)

VARIANTS = ["ce", "ce_control", "lff", "ssod", "mode", "logitnorm"]
LABELS = {"ce": "CE", "ce_control": "CE control", "lff": "LFF", "ssod": "SSOD", "mode": "MODE-F",
          "logitnorm": "LogitNorm"}
ROLES = {"baseline": "ce", "control": "ce_control", "ours": "lff"}
OOD = ["backgrounds", "novel_digits", "textures", "far"]
SIZES = {"train": 40, "test": 30, **{s: 20 + i for i, s in enumerate(OOD)}}
HW, L, C, K = 4, 16, 8, 4  # 4 x 4 map of 16 local vectors on 16 x 16 images, 8 channels, 4 classes


# ----------------------------------------------------------------------------- file checks
def png_size(path) -> tuple[int, int, float]:
    """Width and height in pixels and the resolution (dots per inch, from pHYs) of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    w, h = struct.unpack(">II", data[16:24])
    i = data.index(b"pHYs")
    ppm = struct.unpack(">I", data[i + 4:i + 8])[0]
    return w, h, ppm * 0.0254


def check_pdf(path) -> None:
    """A complete one-page PDF, 7 inches wide: header, a cross-reference table where startxref points,
    %%EOF, one page whose MediaBox is 504 pt wide."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1."), path
    assert data.rstrip().endswith(b"%%EOF"), path
    offset = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
    assert data[offset:offset + 4] == b"xref", path
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1, path
    box = [float(x) for x in re.search(rb"/MediaBox\s*\[([^\]]+)\]", data).group(1).split()]
    assert box[2] - box[0] == pytest.approx(72 * WIDTH_IN), box  # 7 inches in points


def check_files(png, pdf) -> None:
    w, h, dpi = png_size(png)
    assert dpi == pytest.approx(DPI, rel=1e-3) and w == round(WIDTH_IN * DPI), (w, dpi)
    assert h > 0
    check_pdf(pdf)


def assert_legible(fig) -> None:
    assert fig.get_size_inches()[0] == pytest.approx(WIDTH_IN)
    figures.freeze_layout(fig)  # as save_figure does: laid out once
    problems = layout_problems(fig)
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- synthetic inputs
@pytest.fixture(scope="module")
def feature_files(tmp_path_factory):
    """One feature file per variant; OOD norms shrink along the variant list (so norm AUROCs differ)."""
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    out = {}
    for k, v in enumerate(VARIANTS):
        splits, roles = {}, {}
        for name, n in SIZES.items():
            role = {"train": "id_train", "test": "id_test"}.get(name, "ood")
            scale = 1.0 if role != "ood" else 1.0 - 0.1 * k
            feats = np.abs(rng.normal(2.0 * scale, 0.5, (n, C))).astype(np.float32)
            labels = rng.integers(0, K, n) if role != "ood" else -np.ones(n, np.int64)
            fields = {"logits": rng.normal(size=(n, K)).astype(np.float32), "features": feats, "labels": labels,
                      "preds": rng.integers(0, K, n), "local_norms": np.abs(rng.normal(3.0 * scale, 1.0, (n, L)))}
            if role != "ood":
                fields["local_gt_prob"] = rng.uniform(0, 1, (n, L))
            splits[name], roles[name] = fields, role
        path = root / f"{v}.h5"
        h5schema.write_features(path, head_weight=np.zeros((K, C)), head_bias=np.zeros(K), splits=splits, roles=roles,
                                attrs={"benchmark": "toy", "variant": v, "seed": 0})
        out[v] = str(path)
    return out


@pytest.fixture(scope="module")
def split_files(tmp_path_factory):
    """Splits matching the feature files row for row (labels from the LFF feature file)."""
    root = tmp_path_factory.mktemp("splits")
    rng = np.random.default_rng(1)
    out = {}
    for name, n in SIZES.items():
        labels = rng.integers(0, K, n) if name in ("train", "test") else -np.ones(n, np.int64)
        role = {"train": "id_train", "test": "id_test"}.get(name, "ood")
        meta = {"classes": [str(c) for c in range(K)], "role": role}
        if name == "train":
            meta.update(mean=[0.5] * 3, std=[0.25] * 3)
        images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
        save_split(root / f"{name}.npz", Split(images, labels, meta))
        out[name] = str(root / f"{name}.npz")
    return out


@pytest.fixture(scope="module")
def matched(tmp_path_factory, split_files):
    """Feature files whose labels are those of ``split_files`` (what extraction writes)."""
    from lffood.data.arrays import load_split

    root = tmp_path_factory.mktemp("matched")
    rng = np.random.default_rng(2)
    out = {}
    for v in ("ce", "lff"):
        splits, roles = {}, {}
        for name, p in split_files.items():
            labels = load_split(p).labels
            n = len(labels)
            role = {"train": "id_train", "test": "id_test"}.get(name, "ood")
            fields = {"logits": np.zeros((n, K), np.float32), "features": np.ones((n, C), np.float32),
                      "labels": labels, "preds": np.zeros(n, np.int64),
                      "local_norms": rng.uniform(0, 5, (n, L)).astype(np.float32)}
            if role != "ood":
                fields["local_gt_prob"] = np.full((n, L), 0.5, np.float32)
            splits[name], roles[name] = fields, role
        h5schema.write_features(root / f"{v}.h5", head_weight=np.zeros((K, C)), head_bias=np.zeros(K), splits=splits,
                                roles=roles, attrs={"benchmark": "toy", "variant": v, "seed": 0})
        out[v] = str(root / f"{v}.h5")
    return out


def monitors(tmp_path):
    """Monitor files (lffood.monitor) of two seeds: per epoch two vectors in bin 100 (p_j(y|x) in [0.1, 0.101),
    background at delta 0.25) with mean norm 5 - seed, 4, 3 and two in bin 600 with mean norm 6, 6 + seed, 6.5."""
    out = {}
    for v in ("lff", "ce_control"):
        files = []
        for s in (0, 1):
            p = tmp_path / f"{v}_{s}_monitor.csv"
            sel, unsel = [5.0 - s, 4.0, 3.0], [6.0, 6.0 + s, 6.5]
            pd.DataFrame({"epoch": [1, 1, 2, 2, 3, 3], "bin": [100, 600] * 3, "count": [2] * 6,
                          "norm_sum": [2 * x for pair in zip(sel, unsel) for x in pair]}).to_csv(p, index=False)
            files.append(str(p))
        out[v] = files
    return out


# AUROC (fractions) per variant and seed: its own scorer gets these, another scorer 0.5
OWN = {"ce": "react", "ce_control": "react", "lff": "react", "ssod": "ssod", "mode": "csd", "logitnorm": "msp"}
AUC = {v: {s: {o: 0.70 + 0.03 * i + 0.01 * j + 0.02 * s for j, o in enumerate(OOD)} for s in (0, 1)}
       for i, v in enumerate(VARIANTS)}


def metric_files(tmp_path):
    files = []
    for v in VARIANTS:
        for s in (0, 1):
            rows = [{"benchmark": "toy", "variant": v, "seed": s, "scorer": sc, "ood_set": o,
                     "auroc": AUC[v][s][o] if sc == OWN[v] else 0.5, "fpr95": 0.5, "aupr_in": 0.5, "aupr_out": 0.5,
                     "id_acc": 0.9} for sc in {OWN[v], "energy"} for o in OOD]
            p = tmp_path / f"m_{v}_{s}.csv"
            pd.DataFrame(rows).to_csv(p, index=False)
            integrity.seal(p)  # as the metrics rule writes them: with an integrity manifest
            files.append(str(p))
    return files


# ----------------------------------------------------------------------------- palette and checker
def test_method_colours_are_okabe_ito_by_role():
    c = method_colours(VARIANTS, ROLES)
    assert set(c.values()) <= set(OKABE_ITO.values())
    assert len(set(c.values())) == len(VARIANTS)
    assert c["lff"] == OKABE_ITO["vermillion"] and c["ce_control"] == OKABE_ITO["blue"]
    assert c["ce"] == OKABE_ITO["black"]
    # the same method keeps its colour when another method is left out
    assert method_colours(["lff", "ssod"], ROLES)["lff"] == c["lff"]


def test_layout_checker_flags_small_clipped_and_overlapping_text():
    fig = plt.figure(figsize=(WIDTH_IN, 2))
    ax = fig.add_subplot()
    ax.set_xticks([])
    ax.set_yticks([])
    assert layout_problems(fig) == []
    ax.text(0.5, 0.5, "tiny", fontsize=MIN_FONT_PT - 1)
    ax.text(0.1, 0.1, "first label", fontsize=8)
    ax.text(0.1, 0.1, "second label", fontsize=8)
    fig.text(1.02, 0.5, "clipped", fontsize=8)
    problems = "\n".join(layout_problems(fig))
    assert "'tiny': 6.0 pt" in problems
    assert "'first label' overlaps 'second label'" in problems
    assert "'clipped': outside the canvas" in problems
    plt.close(fig)


# ----------------------------------------------------------------------------- Fig. 5 and local norms
def test_feature_norm_figure(feature_files, tmp_path):
    features = {v: [p] for v, p in feature_files.items()}
    fig = plot_feature_norms(features, "toy", OOD, LABELS)
    assert_legible(fig)
    axes = np.array(fig.axes).reshape(len(VARIANTS), len(OOD))
    for i, v in enumerate(VARIANTS):
        assert axes[i, 0].get_ylabel() == f"{LABELS[v]}\ndensity"
        id_n = np.linalg.norm(h5schema.read_split(feature_files[v], "test")["features"], axis=1)
        for j, s in enumerate(OOD):
            ood_n = np.linalg.norm(h5schema.read_split(feature_files[v], s)["features"], axis=1)
            corner = [t.get_text() for t in axes[i, j].texts]
            assert corner == [f"AUROC {100 * auroc(id_n, ood_n):.1f}"]
    assert [ax.get_title() for ax in axes[0]] == [s.replace("_", " ") for s in OOD]
    png, pdf = tmp_path / "n.png", tmp_path / "n.pdf"
    figures.save_figure(fig, str(png), str(pdf))
    check_files(png, pdf)


def test_feature_norm_figure_of_a_diverged_model_stays_legible(feature_files, tmp_path):
    """Norms of 1e12 (a diverged model, as the rehearsal's one-epoch runs can give) are drawn in units
    of a power of ten named in the axis label, with no offset text overlapping it."""
    import shutil

    import h5py

    features = {}
    for v, p in feature_files.items():
        big = tmp_path / f"{v}.h5"
        shutil.copy(p, big)
        with h5py.File(big, "r+") as f:
            for name in f["splits"]:
                f[f"splits/{name}/features"][...] *= 1e12
        integrity.seal(big)  # a model that wrote such features (the copy's own manifest)
        features[v] = [str(big)]
    fig = plot_feature_norms(features, "toy", OOD, LABELS)
    assert_legible(fig)
    labels = {ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()}
    assert labels == {"L2 norm / 1e12"}, labels
    # no longer than the plain label, which fits under each of the paper benchmarks' six columns
    assert len("L2 norm / 1e12") <= len("feature L2 norm")
    plt.close(fig)


def test_local_norm_figure(feature_files, tmp_path):
    features = {v: [p] for v, p in feature_files.items()}
    fig = plot_local_norms(features, monitors(tmp_path), 0.25, "toy", LABELS, compare=["lff", "ce_control"])
    assert_legible(fig)
    for ax, v in zip(fig.axes, VARIANTS):
        d = h5schema.read_split(feature_files[v], "test")
        assert ax.get_title() == f"{LABELS[v]}: {100 * (d['local_gt_prob'] < 0.25).mean():.0f}% background"
    traj = fig.axes[len(VARIANTS)]
    lff_bg = traj.get_lines()[0]
    np.testing.assert_allclose(lff_bg.get_ydata(), [4.5, 4.0, 3.0])  # mean over the two seeds
    np.testing.assert_allclose(traj.get_lines()[1].get_ydata(), [6.0, 6.5, 6.5])
    plt.close(fig)
    # the same monitor files read at another delta: at 0.7 bin 600 is background too
    fig = plot_local_norms(features, monitors(tmp_path), 0.7, "toy", LABELS, compare=["lff"])
    np.testing.assert_allclose(fig.axes[len(VARIANTS)].get_lines()[0].get_ydata(), [5.25, 5.25, 4.75])
    plt.close(fig)
    fig = plot_local_norms(features, monitors(tmp_path), 0.25, "toy", LABELS, compare=["lff", "ce_control"])
    png, pdf = tmp_path / "l.png", tmp_path / "l.pdf"
    figures.save_figure(fig, str(png), str(pdf))
    check_files(png, pdf)


def test_render_figures_writes_both_as_png_and_pdf(feature_files, tmp_path):
    features = {v: [feature_files[v]] for v in ("ce", "lff")}
    out = {f"{n}_{e}": str(tmp_path / f"{n}.{e}") for n in ("norms", "local") for e in ("png", "pdf")}
    figures.render_figures(features, monitors(tmp_path), delta=0.25, title="toy", norms_png=out["norms_png"],
                           local_png=out["local_png"], labels=LABELS, ood_order=OOD[:2], compare=["lff"],
                           norms_pdf=out["norms_pdf"], local_pdf=out["local_pdf"])
    for n in ("norms", "local"):
        check_files(tmp_path / f"{n}.png", tmp_path / f"{n}.pdf")


# ----------------------------------------------------------------------------- Fig. 3: AUROC bars
def test_auroc_bar_table_uses_each_methods_own_scorer(tmp_path):
    from lffood.report.tables import collect

    methods = {v: (LABELS[v], OWN[v]) for v in VARIANTS}
    t = auroc_bar_table(collect(metric_files(tmp_path)), methods, OOD).set_index(["variant", "ood_set"])
    for v in VARIANTS:
        for o in OOD:
            vals = 100 * np.array([AUC[v][s][o] for s in (0, 1)])
            assert t.loc[(v, o), "auroc_mean"] == pytest.approx(vals.mean())
            assert t.loc[(v, o), "auroc_std"] == pytest.approx(vals.std(ddof=1))
        avg = 100 * np.array([np.mean([AUC[v][s][o] for o in OOD]) for s in (0, 1)])
        assert t.loc[(v, "average"), "auroc_mean"] == pytest.approx(avg.mean())
        assert t.loc[(v, "average"), "auroc_std"] == pytest.approx(avg.std(ddof=1))
        assert t.loc[(v, "average"), "scorer"] == OWN[v]
    with pytest.raises(LffoodError, match="variant 'lff' with its scorer 'knn'"):
        auroc_bar_table(collect(metric_files(tmp_path)), {"lff": ("LFF", "knn")}, OOD)


def test_auroc_bars_figure(tmp_path):
    from lffood.report.tables import collect

    methods = {v: (LABELS[v], OWN[v]) for v in VARIANTS}
    table = auroc_bar_table(collect(metric_files(tmp_path)), methods, OOD)
    fig = plot_auroc_bars(table, colours=method_colours(VARIANTS, ROLES), reference="ce_control", title="toy")
    assert_legible(fig)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_width() > 0]
    assert len(bars) == len(VARIANTS) * (len(OOD) + 1)
    tops = np.array([b.get_y() + b.get_height() for b in bars])
    np.testing.assert_allclose(tops, table["auroc_mean"].to_numpy())  # method-major, sets in order
    hatched = {i // (len(OOD) + 1) for i, b in enumerate(bars) if b.get_hatch()}
    assert hatched == {VARIANTS.index("ce_control")}  # the reference, and only it
    # lowest mean - std: 71.0 - 1.41 (CE on backgrounds); one point of room, then the 5% step below
    assert ax.get_ylabel() == "AUROC (%)" and ax.get_ylim() == (65.0, 100.0)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "CE control (ReAct), reference" in texts and "SSOD (SSOD)" in texts
    plt.close(fig)
    out = {e: tmp_path / f"bars.{e}" for e in ("png", "pdf", "csv")}
    figures.write_auroc_bars(metric_files(tmp_path), methods, roles=ROLES, png=str(out["png"]), pdf=str(out["pdf"]),
                             csv=str(out["csv"]), ood_order=OOD)
    check_files(out["png"], out["pdf"])
    assert len(pd.read_csv(out["csv"])) == len(VARIANTS) * (len(OOD) + 1)


# ----------------------------------------------------------------------------- Fig. 7: heat maps
@pytest.mark.parametrize("n, hw, shape", [(16, (16, 16), (4, 4)), (64, (32, 32), (8, 8)), (49, (224, 224), (7, 7)),
                                          (12, (30, 40), (3, 4)), (12, (40, 30), (4, 3)), (1, (8, 8), (1, 1))])
def test_map_shape(n, hw, shape):
    assert map_shape(n, hw) == shape


def test_map_shape_refuses_what_does_not_tile():
    with pytest.raises(LffoodError, match="7 local vectors"):
        map_shape(7, (16, 16))


def test_heatmap_selection_is_seeded_and_without_repeats():
    sizes = {"test": 30, "far": 5, "near": 1}
    a = heatmap_selection(sizes, n_id=3, per_ood=2, seed=0)
    assert a == heatmap_selection(sizes, n_id=3, per_ood=2, seed=0)
    assert [s for s, _ in a] == ["test"] * 3 + ["far"] * 2 + ["near"]
    assert len(set(a)) == len(a) and all(0 <= r < sizes[s] for s, r in a)
    assert a != heatmap_selection(sizes, n_id=3, per_ood=2, seed=1)


def test_heatmaps_show_each_models_norms_on_one_scale_per_row(matched, split_files, tmp_path, monkeypatch):
    from lffood.data.arrays import load_split

    shown = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, png, pdf=None: shown.setdefault("fig", fig))
    splits = {s: split_files[s] for s in ["test", *OOD]}
    chosen = figures.write_heatmaps(matched, splits, png="unused.png", pdf="unused.pdf", labels=LABELS, n_id=2,
                                    per_ood=1, seed=3)
    assert [s for s, _ in chosen] == ["test", "test", *OOD]
    fig = shown["fig"]
    assert_legible(fig)
    ncols = len(chosen) + 1  # and the colour bars
    axes = np.array(fig.axes[:3 * ncols]).reshape(3, ncols)
    for j, (s, r) in enumerate(chosen):
        np.testing.assert_array_equal(axes[0, j].get_images()[0].get_array(), load_split(split_files[s]).images[r])
        assert axes[0, j].get_title().startswith("ID #" if s == "test" else "OOD #")
    for i, v in enumerate(["ce", "lff"], start=1):
        assert axes[i, 0].get_ylabel() == LABELS[v]
        clims = set()
        for j, (s, r) in enumerate(chosen):
            # overlaid: the image in grey, then the norm map upsampled to the image's 16 x 16 pixels
            grey, overlay = axes[i, j].get_images()
            image = load_split(split_files[s]).images[r]
            np.testing.assert_allclose(grey.get_array(), image @ [0.299, 0.587, 0.114] / 255.0)
            assert grey.get_cmap().name == "gray"
            want = h5schema.read_split(matched[v], s)["local_norms"][r].reshape(HW, HW)
            np.testing.assert_allclose(overlay.get_array(), figures.upsample_bilinear(want, (16, 16)))
            assert overlay.get_array().shape == image.shape[:2] and overlay.get_alpha() == figures.HEATMAP_ALPHA
            assert overlay.get_extent() == grey.get_extent() == [-0.5, 15.5, 15.5, -0.5]
            assert overlay.get_cmap().name == figures.HEATMAP_CMAP
            clims.add(overlay.get_clim())
        assert len(clims) == 1  # one colour scale per row
        assert clims.pop()[1] == pytest.approx(max(
            h5schema.read_split(matched[v], s)["local_norms"][r].max() for s, r in chosen))
        bar = axes[i, -1]  # the row's colour bar, on the same scale
        assert bar.get_ylim() == pytest.approx((0.0, max(h5schema.read_split(matched[v], s)["local_norms"][r].max()
                                                        for s, r in chosen)))
    plt.close(fig)


@pytest.mark.parametrize("grid, shape", [((4, 4), (32, 32)), ((7, 7), (224, 224)), ((3, 4), (30, 40)), ((4, 4), (16, 16)),
                                         ((1, 1), (8, 8)), ((2, 3), (5, 7))])
def test_upsample_bilinear_is_torchs_bilinear_resize(grid, shape):
    import torch

    m = np.random.default_rng(0).uniform(0, 5, grid)
    want = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None], size=shape, mode="bilinear",
                                           align_corners=False)[0, 0].numpy()
    got = figures.upsample_bilinear(m, shape)
    assert got.shape == shape
    np.testing.assert_allclose(got, want, atol=1e-10)
    # cell centres keep their values where the scale is an odd integer (no interpolation there)
    np.testing.assert_allclose(figures.upsample_bilinear(m, (3 * grid[0], 3 * grid[1]))[1::3, 1::3], m)


@pytest.mark.parametrize("watermark", [None, "REHEARSAL (not a result)"])
def test_heatmap_overlay_on_imagenet_sized_images_is_legible(watermark, tmp_path):
    """Paper benchmark sizes: 224 x 224 images with a 7 x 7 map, two ID images and four OOD sets,
    three models (CE, the CE control, LFF); one colour bar per model row."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(6)]
    titles = ["ID #1\nclass n01440764", "ID #7\nclass n01443537",
              *[f"OOD #{i}\n{s}" for i, s in enumerate(["inaturalist", "sun", "places", "textures"])]]
    maps = {v: [rng.uniform(0, 3, (7, 7)) for _ in range(6)] for v in ("ce", "ce_control", "lff")}
    fig = plot_heatmaps(images, titles, maps, labels=LABELS, title="ImageNet-100 vs iNaturalist, SUN, Places, "
                        "Textures; ResNet-50", watermark=watermark)
    assert_legible(fig)
    axes = np.array(fig.axes).reshape(4, 7)
    assert [axes[i, 0].get_ylabel() for i in range(4)] == ["image", "CE", "CE control", "LFF"]
    for i in range(1, 4):
        assert all(len(axes[i, j].get_images()) == 2 for j in range(6))
        assert axes[i, 1].get_images()[1].get_array().shape == (224, 224)
    colour_bars = [ax for ax in fig.axes if ax.get_visible() and ax.get_ylabel() == "||z_j||"]
    assert len(colour_bars) == 3
    png, pdf = tmp_path / "h.png", tmp_path / "h.pdf"
    figures.save_figure(fig, str(png), str(pdf))
    check_files(png, pdf)


def test_heatmaps_refuse_a_feature_file_of_other_images(matched, split_files, tmp_path):
    with pytest.raises(LffoodError, match="row for row"):
        figures.write_heatmaps(matched, {"test": split_files["far"], "far": split_files["far"]},
                               png=str(tmp_path / "h.png"), pdf=str(tmp_path / "h.pdf"), labels=LABELS)


def test_heatmap_files(matched, split_files, tmp_path):
    png, pdf = tmp_path / "h.png", tmp_path / "h.pdf"
    figures.write_heatmaps(matched, {s: split_files[s] for s in ["test", *OOD]}, png=str(png), pdf=str(pdf),
                           labels=LABELS)
    check_files(png, pdf)


def test_plot_heatmaps_many_columns_stays_legible():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    titles = [f"OOD #{1000 + i}\nlsun resize" for i in range(8)]
    maps = {v: [rng.uniform(0, 3, (4, 4)) for _ in range(8)] for v in VARIANTS}
    fig = plot_heatmaps(images, titles, maps, labels=LABELS, title="CIFAR-10 vs six OOD sets, ResNet-34")
    assert_legible(fig)
    plt.close(fig)


# ----------------------------------------------------------------------------- Fig. 2: t-SNE
def test_tsne_embedding_is_seeded_and_keeps_groups():
    rng = np.random.default_rng(0)
    groups = {"id": rng.normal(0, 1, (40, 8)), "ood": rng.normal(3, 1, (30, 8)), "background": np.zeros((0, 8))}
    a = tsne_embedding(groups, random_state=0)
    b = tsne_embedding(groups, random_state=0)
    assert {g: e.shape for g, e in a.items()} == {"id": (40, 2), "ood": (30, 2), "background": (0, 2)}
    for g in groups:
        np.testing.assert_array_equal(a[g], b[g])
    # the two well-separated groups stay apart
    gap = np.linalg.norm(a["id"].mean(0) - a["ood"].mean(0))
    assert gap > 2 * max(a["id"].std(0).max(), a["ood"].std(0).max())


def test_tsne_figure_is_legible():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 10)
    separated = np.c_[10.0 * labels, np.zeros(80)] + rng.normal(0, 1, (80, 2))  # class c around (10 c, 0)
    emb = {"ce": {"id": separated, "ood": rng.normal(3, 1, (30, 2)), "background": rng.normal(-3, 1, (30, 2))},
           "lff": {"id": rng.normal(0, 1, (80, 2)), "ood": rng.normal(3, 1, (30, 2)), "background": np.zeros((0, 2))}}
    fig = plot_tsne(emb, {v: labels for v in emb}, labels=LABELS, ood_set="novel_digits",
                    title="CIFAR-10 vs six OOD sets, ResNet-34 (paper Tables I and IV), a long benchmark description")
    assert_legible(fig)
    assert [ax.get_title() for ax in fig.axes] == ["CE: 80 ID, 30 OOD, 30 background",
                                                   "LFF: 80 ID, 30 OOD, 0 background"]
    shown = [[t.get_text() for t in ax.texts if t.get_visible()] for ax in fig.axes]
    assert shown[0] == [str(c) for c in range(8)]  # every class's number where clusters are apart
    assert 1 <= len(shown[1]) < 8  # overlapping clusters: numbers that would overlap are left out
    plt.close(fig)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import torch

    from lffood.models import build_model
    from lffood.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for i, v in enumerate(("ce", "lff")):
        torch.manual_seed(i)
        model = build_model({"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}, K)
        save_checkpoint(root / f"{v}.pt", model, {"model": {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]},
                                                  "num_classes": K})
        out[v] = str(root / f"{v}.pt")
    return out


def test_tsne_vectors_are_the_models_own(checkpoints, split_files, tmp_path):
    import torch

    from lffood.data.arrays import load_split
    from lffood.local import local_gt_prob, local_vectors
    from lffood.report.figure_data import write_tsne_vectors
    from lffood.checkpoint import load_checkpoint

    out = tmp_path / "v.npz"
    delta = 0.3
    write_tsne_vectors(checkpoints, train=split_files["train"], test=split_files["test"], ood=split_files["far"],
                       ood_set="far", out=str(out), per_group=12, delta=delta, seed=0, device_name="cpu",
                       batch_size=5)
    meta, data = figures.read_tsne_vectors(out)
    assert meta["variants"] == ["ce", "lff"] and meta["ood_set"] == "far" and meta["per_group"] == 12
    test, far = load_split(split_files["test"]), load_split(split_files["far"])
    train_meta = load_split(split_files["train"]).meta
    mean, std = torch.tensor(train_meta["mean"]).view(1, 3, 1, 1), torch.tensor(train_meta["std"]).view(1, 3, 1, 1)

    def forward(model, images):
        x = (torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255 - mean) / std
        with torch.no_grad():
            return model.eval()(x, return_features=True)

    for v, ckpt in checkpoints.items():
        model, _ = load_checkpoint(ckpt)
        d = data[v]
        assert d["id"].shape == (12, C) and d["ood"].shape == (12, C) and len(d["id_labels"]) == 12
        # the pooled features are those of 12 distinct test (and far) images, with their labels
        _, pooled, fmap = forward(model, test.images)
        dist = np.linalg.norm(d["id"][:, None] - pooled.numpy()[None], axis=2)
        rows = dist.argmin(1)
        assert dist.min(1).max() < 1e-4 and len(set(rows)) == 12
        np.testing.assert_array_equal(d["id_labels"], test.labels[rows])
        _, pooled_far, _ = forward(model, far.images)
        assert np.linalg.norm(d["ood"][:, None] - pooled_far.numpy()[None], axis=2).min(1).max() < 1e-4
        # background vectors: local vectors of those ID images with p_j(y|x) < delta, nothing else
        sub = fmap[torch.from_numpy(np.sort(rows))]
        p = local_gt_prob(sub, model.head.weight, model.head.bias, torch.from_numpy(test.labels[np.sort(rows)]))
        vecs = local_vectors(sub)
        selected, rest = vecs[p < delta].numpy(), vecs[p >= delta].numpy()
        assert len(d["background"]) == min(12, len(selected)) and len(selected) > 0
        for z in d["background"]:
            assert np.linalg.norm(selected - z, axis=1).min() < 1e-4
            assert len(rest) == 0 or np.linalg.norm(rest - z, axis=1).min() > 1e-6
    # the same seed gives the same vectors
    write_tsne_vectors(checkpoints, train=split_files["train"], test=split_files["test"], ood=split_files["far"],
                       ood_set="far", out=str(tmp_path / "w.npz"), per_group=12, delta=delta, seed=0,
                       device_name="cpu", batch_size=7)
    _, again = figures.read_tsne_vectors(tmp_path / "w.npz")
    for v in data:
        for k in data[v]:
            np.testing.assert_allclose(again[v][k], data[v][k], atol=1e-5)


def test_write_tsne(checkpoints, split_files, tmp_path):
    from lffood.report.figure_data import write_tsne_vectors

    write_tsne_vectors(checkpoints, train=split_files["train"], test=split_files["test"], ood=split_files["far"],
                       ood_set="far", out=str(tmp_path / "v.npz"), per_group=20, delta=0.5, device_name="cpu")
    png, pdf = tmp_path / "t.png", tmp_path / "t.pdf"
    emb = figures.write_tsne(str(tmp_path / "v.npz"), png=str(png), pdf=str(pdf), labels=LABELS, title="toy")
    assert set(emb) == {"ce", "lff"} and emb["ce"]["id"].shape == (20, 2)
    check_files(png, pdf)


# ----------------------------------------------------------------------------- Fig. 3 with the paper's values
PAPER_BENCH = "cifar100_resnet34"
PAPER_SETS = ["svhn", "lsun_crop", "lsun_resize", "isun", "textures", "places365"]
POSTHOC_RUN = ["msp", "odin", "mahalanobis", "energy", "vim", "knn", "dice", "react", "dice_react", "featurenorm",
               "line", "csd"]


def paper_metric_files(tmp_path, seeds=(0, 1, 2)):
    """Metrics of the six variants of a paper benchmark: every post-hoc scorer on every model, SSOD's
    score on SSOD; AUROC (fraction) from a seeded generator."""
    rng = np.random.default_rng(5)
    files = []
    for v in VARIANTS:
        for s in seeds:
            scorers = POSTHOC_RUN + (["ssod"] if v == "ssod" else [])
            rows = [{"benchmark": PAPER_BENCH, "variant": v, "seed": s, "scorer": sc, "ood_set": o,
                     "auroc": rng.uniform(0.6, 0.95), "fpr95": 0.5, "aupr_in": 0.5, "aupr_out": 0.5, "id_acc": 0.9}
                    for sc in scorers for o in PAPER_SETS]
            p = tmp_path / f"p_{v}_{s}.csv"
            pd.DataFrame(rows).to_csv(p, index=False)
            integrity.seal(p)
            files.append(str(p))
    return files


@pytest.fixture(scope="module")
def printed():
    from lffood.report import paper_numbers

    return paper_numbers.load()


def test_paper_bar_table_joins_reproduced_and_printed_averages(tmp_path, printed):
    from lffood.report.tables import collect

    files = paper_metric_files(tmp_path)
    tidy = collect(files)
    methods = {v: (LABELS[v], OWN[v]) for v in VARIANTS}
    t = figures.paper_bar_table(tidy, table="table1", bench=PAPER_BENCH, methods=methods, roles=ROLES, paper=printed,
                                ood_order=PAPER_SETS).set_index("method")
    mine = printed[(printed["table"] == "table1") & (printed["benchmark"] == PAPER_BENCH)
                   & (printed["ood_set"] == "average") & (printed["metric"] == "auroc")]
    # every printed method is a row with its printed average
    assert set(mine["method"]) == set(t["paper_method"].dropna())
    for _, r in mine.iterrows():
        assert t[t["paper_method"] == r["method"]]["auroc_paper"].iloc[0] == r["value"]
    # post-hoc rows: that scorer on CE, average over the OOD sets per seed, then mean and std over seeds
    per_seed = tidy[(tidy["variant"] == "ce") & (tidy["scorer"] == "energy")].groupby("seed")["auroc"].mean()
    assert t.loc["Energy", "auroc_mean"] == pytest.approx(per_seed.mean())
    assert t.loc["Energy", "auroc_std"] == pytest.approx(per_seed.std(ddof=1))
    assert t.loc["Energy", "diff"] == pytest.approx(per_seed.mean() - 83.64)  # Table I, CIFAR-100, Energy
    # "Ours" is LFF with its scorer; LogitNorm is reproduced by the variant of that label
    assert (t.loc["Ours (LFF + ReAct)", "variant"], t.loc["Ours (LFF + ReAct)", "auroc_paper"]) == ("lff", 92.31)
    assert t.loc["LogitNorm (MSP)", "source"] == "reproduced" and t.loc["LogitNorm (MSP)", "variant"] == "logitnorm"
    # the training methods the workflow does not reproduce: printed only, no reproduced value
    only = t[t["source"] == figures.PAPER_ONLY]
    assert set(only["paper_method"]) == {"CSI", "SSD+", "VOS", "NPOS", "CIDER", "TagFog"}
    assert only["auroc_mean"].isna().all() and only["variant"].isna().all()
    assert t[t["paper_method"] == "TagFog"]["extra_data"].tolist() == [True]  # the paper's dagger: extra data
    # the workflow's own variants the paper lacks, and KNN: reproduced, no printed value
    for name in ("KNN", "CE control (ReAct)", "SSOD (SSOD)", "MODE-F (CSD)"):
        assert t.loc[name, "source"] == "reproduced (not in the paper)" and np.isnan(t.loc[name, "auroc_paper"])


@pytest.mark.parametrize("seeds, watermark", [((0, 1, 2), None), ((0,), "REHEARSAL (not a result)")])
def test_paper_bars_show_printed_values_apart_from_reproduced_ones(tmp_path, printed, seeds, watermark, monkeypatch):
    from matplotlib.colors import to_hex

    shown = {}
    real_save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, png, pdf=None: (shown.setdefault("fig", fig),
                                                                           real_save(fig, png, pdf)))
    methods = {v: (LABELS[v], OWN[v]) for v in VARIANTS}
    out = {e: tmp_path / f"bars.{e}" for e in ("png", "pdf", "csv")}
    table = figures.write_auroc_bars(paper_metric_files(tmp_path, seeds), methods, roles=ROLES, png=str(out["png"]),
                                     pdf=str(out["pdf"]), csv=str(out["csv"]), title="CIFAR-100 vs six OOD sets",
                                     ood_order=PAPER_SETS, watermark=watermark, paper=printed, paper_table="table1",
                                     bench=PAPER_BENCH)
    check_files(out["png"], out["pdf"])
    fig = shown["fig"]
    assert layout_problems(fig) == []
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_width() > 0]
    hollow = [b for b in bars if b.get_hatch()]
    filled = [b for b in bars if not b.get_hatch()]
    left = ax.get_xlim()[0]
    # printed values: hollow, hatched, white inside, one per printed row, at the printed value
    assert all(to_hex(b.get_facecolor()) == "#ffffff" for b in hollow)
    np.testing.assert_allclose(sorted(b.get_x() + b.get_width() for b in hollow),
                               sorted(table["auroc_paper"].dropna()))
    assert left <= table["auroc_paper"].min()
    # reproduced values: filled in their model's colour, none for a printed-only method
    colours = method_colours(VARIANTS, ROLES)
    rep = table[table["auroc_mean"].notna()]
    assert len(filled) == len(rep)
    for b, (_, r) in zip(filled, rep.iterrows()):
        assert b.get_x() + b.get_width() == pytest.approx(r["auroc_mean"])
        assert to_hex(b.get_facecolor()) == colours[r["variant"]].lower()
    # the rows: printed-only methods say so, in grey italics
    ticks = {t.get_text(): t for t in ax.get_yticklabels()}
    for name in ("CSI", "SSD+", "VOS", "NPOS", "CIDER"):
        tick = ticks[f"{name}: printed only"]
        assert tick.get_fontstyle() == "italic" and to_hex(tick.get_color()) == "#666666"
    tagfog = table[table["paper_method"] == "TagFog"]["method"].iloc[0]
    assert f"{tagfog} (extra data): printed only" in ticks and "Ours (LFF + ReAct)" in ticks and "MSP" in ticks
    # the legend names the paper's bars, with their style
    legend = fig.legends[0]
    names = [t.get_text() for t in legend.get_texts()]
    assert figures.PAPER_LABEL == "paper (printed)" and figures.PAPER_LABEL in names
    handle = legend.legend_handles[names.index(figures.PAPER_LABEL)]
    assert handle.get_hatch() and to_hex(handle.get_facecolor()) == "#ffffff"
    assert "reproduced: CE model (post-hoc rows)" in names and "reproduced: LFF" in names
    # the CE control's reproduced mean is the dashed reference line
    ctrl = table.set_index("variant").loc["ce_control", "auroc_mean"]
    assert [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"] == [pytest.approx(ctrl)]
    # one seed: no error bars
    assert (len(ax.collections) > 0) == (len(seeds) > 1)
    heading = fig._suptitle.get_text()
    assert "Table I" in heading and (heading.startswith(f"{watermark}\n") if watermark else True)
    plt.close(fig)
    # the CSV: the plotted numbers; the watermark on the reproduced rows, never on the printed ones
    csv = pd.read_csv(out["csv"], keep_default_na=False)
    assert len(csv) == len(table)
    if watermark:
        assert set(csv[csv["source"] == figures.PAPER_ONLY]["watermark"]) == {""}
        assert set(csv[csv["source"] != figures.PAPER_ONLY]["watermark"]) == {watermark}
    else:
        assert "watermark" not in csv


def test_paper_bars_of_table2_and_table3_are_legible(tmp_path, printed):
    """Table II (WRN-28-10: averages only, no NPOS) and Table III (ImageNet-100: LINE, four OOD sets)."""
    from lffood.report.tables import collect

    methods = {v: (LABELS[v], OWN[v]) for v in VARIANTS}
    for table, bench in (("table2", "cifar10_wrn28_10"), ("table3", "imagenet100_resnet50")):
        tidy = collect(paper_metric_files(tmp_path, seeds=(0,)))
        tidy["benchmark"] = bench
        t = figures.paper_bar_table(tidy, table=table, bench=bench, methods=methods, roles=ROLES, paper=printed,
                                    ood_order=PAPER_SETS)
        assert ("NPOS" in set(t["paper_method"])) == (table == "table3")
        fig = figures.plot_paper_bars(t, colours=method_colours(VARIANTS, ROLES), roles=ROLES, labels=methods,
                                      title=bench, paper_table=table)
        assert_legible(fig)
        plt.close(fig)
    with pytest.raises(LffoodError, match="prints no table3 numbers for benchmark 'cifar10_wrn28_10'"):
        figures.paper_bar_table(tidy, table="table3", bench="cifar10_wrn28_10", methods=methods, roles=ROLES,
                                paper=printed)


# ----------------------------------------------------------------------------- Fig. 6: the paper's reference line
def _sweep_metrics(tmp_path, seeds, points):
    rng = np.random.default_rng(3)
    rows = []
    for p in points:
        for s in seeds:
            rows += [{"benchmark": "b", "variant": p["variant"], "seed": s, "scorer": p["scorer"], "ood_set": o,
                      "auroc": rng.uniform(0.85, 0.95), "fpr95": 0.3, "aupr_in": 0.5, "aupr_out": 0.5, "id_acc": 0.9}
                     for o in ("svhn", "isun")]
    for s in seeds:
        rows += [{"benchmark": "b", "variant": "ce_control", "seed": s, "scorer": "react", "ood_set": o,
                  "auroc": 0.86 + 0.01 * s, "fpr95": 0.4, "aupr_in": 0.5, "aupr_out": 0.5, "id_acc": 0.9}
                 for o in ("svhn", "isun")]
    path = tmp_path / "sweep_metrics.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    integrity.seal(path)
    return [str(path)]


PAPER_GRID = [{"param": "delta", "value": v, "variant": f"lff_delta{v}", "base": "lff", "scorer": "react"}
              for v in (0.003, 0.005, 0.007, 0.01, 0.012, 0.015)] + \
             [{"param": "mu", "value": v, "variant": f"lff_mu{v}", "base": "lff", "scorer": "react"}
              for v in (1.0, 1.5, 2.0, 3.0, 4.0)] + \
             [{"param": "lambda", "value": v, "variant": f"lff_lambda{v}", "base": "lff", "scorer": "react"}
              for v in (0.25, 0.5, 1.0, 1.5, 2.0)] + \
             [{"param": "gamma", "value": v, "variant": f"ssod_gamma{v}", "base": "ssod", "scorer": "ssod"}
              for v in (0.9, 0.95, 0.99)]
#: the rehearsal's sweep: one point per parameter, not on the paper's grid
ONE_POINT = [{"param": "delta", "value": 0.05, "variant": "lff_delta0.05", "base": "lff", "scorer": "react"},
             {"param": "mu", "value": 2.0, "variant": "lff_mu2.0", "base": "lff", "scorer": "react"},
             {"param": "lambda", "value": 0.5, "variant": "lff_lambda0.5", "base": "lff", "scorer": "react"},
             {"param": "gamma", "value": 0.9, "variant": "ssod_gamma0.9", "base": "ssod", "scorer": "ssod"}]
NPOS = {"method": "NPOS", "table": "table1", "auroc": 88.31, "fpr95": 45.84}


@pytest.mark.parametrize("points, seeds, reference, watermark", [
    (PAPER_GRID, (0, 1, 2), NPOS, None),
    (PAPER_GRID, (0, 1, 2), NPOS, "REHEARSAL (not a result)"),
    (ONE_POINT, (0,), NPOS, "REHEARSAL (not a result)"),
    (ONE_POINT, (0,), None, None),
])
def test_sensitivity_draws_the_papers_reference_and_the_ce_control(tmp_path, monkeypatch, points, seeds, reference,
                                                                   watermark):
    from lffood.report import sensitivity

    shown = []
    monkeypatch.setattr(sensitivity, "save_figure", lambda fig, png, pdf: shown.append(fig))
    labels = {"lff": "LFF", "ssod": "SSOD", "ce_control": "CE control"}
    csv = tmp_path / "s.csv"
    df = sensitivity.write_sensitivity(_sweep_metrics(tmp_path, seeds, points), points, reference="ce_control",
                                       reference_scorer="react", labels=labels, title="CIFAR-100 vs six OOD sets",
                                       csv=str(csv), png="-", pdf="-", watermark=watermark, paper_reference=reference)
    fig = shown[0]
    assert_legible(fig)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4 and [ax.get_title() for ax in axes] == ["LFF: δ", "LFF: μ", "LFF: λ", "SSOD: γ"]
    control = df[df["kind"] == "reference"].groupby("param")["auroc"].mean()
    for ax, p in zip(axes, ("delta", "mu", "lambda", "gamma")):
        hlines = {ln.get_linestyle(): ln.get_ydata()[0] for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1
                  and ln.get_xydata().shape[0] == 2 and ln.get_transform() != ax.transData}
        assert hlines["--"] == pytest.approx(control[p])  # the CE control, on every panel
        if reference:
            assert hlines[":"] == pytest.approx(88.31)  # NPOS's printed average AUROC, on every panel
        else:
            assert ":" not in hlines
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names[:2] == ["LFF", "SSOD"] and "CE control" in names and "CE control (react)" in names
    assert ("NPOS, printed in the paper (Table I average): 88.31" in names) == bool(reference)
    assert fig._suptitle.get_text().startswith(f"{watermark}\n" if watermark else "Sensitivity")
    plt.close(fig)
    out = pd.read_csv(csv, keep_default_na=False)
    paper = out[out["kind"] == "paper"]
    assert len(paper) == (4 if reference else 0)
    if reference:
        assert set(paper["variant"]) == {"NPOS"} and set(paper["auroc"]) == {88.31}
        assert set(paper["seed"]) == {""}  # printed: no seed
    if watermark:
        assert set(paper["watermark"]) <= {""} and set(out[out["kind"] != "paper"]["watermark"]) == {watermark}


# ----------------------------------------------------------------------------- what the paper benchmarks show
@pytest.fixture(scope="module")
def shipped():
    import yaml

    from lffood.config import validate_config

    root = figures.__file__.rsplit("/src/", 1)[0]
    with open(f"{root}/config.yaml") as fh:
        return validate_config(yaml.safe_load(fh), f"{root}/src/lffood/resources/config.schema.yaml")


def test_paper_figures_show_what_the_paper_shows(shipped, printed):
    from lffood.report import figure_data

    b, tables = shipped["benchmarks"], shipped["tables"]
    # Fig. 2: iSUN on CIFAR-10 / ResNet-34 (the paper's), iSUN on the other CIFAR benchmarks, SUN on ImageNet-100
    assert figure_data.tsne_choice(b["cifar10_resnet34"], tables) == {"variants": ["ce", "lff"], "ood_set": "isun"}
    for name in ("cifar100_resnet34", "cifar10_wrn28_10", "cifar100_wrn28_10"):
        assert figure_data.tsne_choice(b[name], tables)["ood_set"] == "isun"
    assert figure_data.tsne_choice(b["imagenet100_resnet50"], tables)["ood_set"] == "sun"
    assert figure_data.tsne_choice(b["embedded"], tables)["ood_set"] == "backgrounds"  # unchanged: the first
    # Fig. 3: the printed values of each paper benchmark's table; none for the embedded benchmark
    assert {n: figure_data.printed_table(n, tables, printed) for n in b} == {
        "embedded": None, "embedded_baselines": None, "cifar10_resnet34": "table1", "cifar100_resnet34": "table1",
        "cifar10_wrn28_10": "table2", "cifar100_wrn28_10": "table2", "imagenet100_resnet50": "table3"}
    # Fig. 6: built by `all` where the paper has it, with NPOS (CIFAR-100) and SSD+ (ImageNet-100) printed averages
    assert {n for n in b if b[n]["figures"]["sensitivity"]["in_all"]} == {"cifar100_resnet34", "imagenet100_resnet50"}
    assert all(b[n]["sweeps"] for n in ("cifar100_resnet34", "imagenet100_resnet50"))
    assert figure_data.sensitivity_reference("cifar100_resnet34", b["cifar100_resnet34"], tables, printed) == {
        "method": "NPOS", "table": "table1", "auroc": 88.31, "fpr95": 45.84}
    assert figure_data.sensitivity_reference("imagenet100_resnet50", b["imagenet100_resnet50"], tables, printed) == {
        "method": "SSD+", "table": "table3", "auroc": 92.83, "fpr95": 37.70}
    assert figure_data.sensitivity_reference("embedded", b["embedded"], tables, printed) is None
    # Fig. 7: the paper's two models (CE, LFF) and the CE control on the paper benchmarks; every model on the embedded
    assert figure_data.heatmap_variants(b["imagenet100_resnet50"]) == ["ce", "ce_control", "lff"]
    assert figure_data.heatmap_variants(b["embedded"]) == list(b["embedded"]["variants"])


def test_figure_keys_that_name_what_does_not_exist_are_refused(shipped, printed):
    import copy

    from lffood.report import figure_data

    tables = shipped["tables"]
    bench = copy.deepcopy(shipped["benchmarks"]["cifar10_resnet34"])
    bench["figures"]["heatmaps"]["variants"] = ["ce", "nope"]
    with pytest.raises(LffoodError, match=r"\['nope'\] \(key figures.heatmaps.variants\)"):
        figure_data.heatmap_variants(bench)
    bench["figures"]["sensitivity"]["paper_reference"] = "NOPE"
    with pytest.raises(LffoodError, match="prints no average AUROC of 'NOPE'"):
        figure_data.sensitivity_reference("cifar10_resnet34", bench, tables, printed)
    with pytest.raises(LffoodError, match="does not print"):
        figure_data.sensitivity_reference("embedded", {"figures": {"sensitivity": {"paper_reference": "NPOS"}}},
                                          tables, printed)
