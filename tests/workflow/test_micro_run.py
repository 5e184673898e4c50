"""Run the whole chain through Snakemake on the micro configuration (every variant: CE, the CE
control, LFF, SSOD, MODE, LogitNorm and the training baselines VOS, NPOS, CIDER, SSD+ and CSI's two
stages), then check what it built (every figure as PNG and PDF, 7 inches
wide and legible), that a second run has nothing to do, that a scorer change reruns only scoring,
that the sensitivity target builds, and that a collapsed LFF run fails with a clear message and
leaves no checkpoint."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import MICRO, job_counts, snakemake
from lffood import h5schema

pytestmark = pytest.mark.workflow

SEEDS, VARIANTS = (0,), ("ce", "ce_control", "lff", "ssod", "mode", "logitnorm", "vos", "npos", "cider", "ssd_plus",
                          "csi_pre", "csi")
SCORERS = ("msp", "odin", "mahalanobis", "energy", "vim", "knn", "dice", "react", "dice_react", "featurenorm", "line",
           "csd")
SSOD_SCORERS = ("ssod", "ssod_global", "ssod_local")  # SSOD models only
#: the scorers that apply to one variant's models only: SSOD's OOD head, and the baselines' own scores
OWN_SCORERS = {"ssod": SSOD_SCORERS, "npos": ("npos_knn",), "cider": ("cider_knn",), "csi": ("csi",),
               "ssd_plus": ("ssd",)}
OWN = tuple(s for scorers in OWN_SCORERS.values() for s in scorers)
MODELS = len(SEEDS) * len(VARIANTS)
OOD = ("backgrounds", "novel_digits", "textures", "far")


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    work = tmp_path_factory.mktemp("micro")
    t0 = time.perf_counter()
    proc = snakemake(work, "--cores", "2", "all", config=MICRO, timeout=600)
    elapsed = time.perf_counter() - t0
    print(f"micro workflow: {elapsed:.1f} s")
    return work, proc, elapsed


def test_outputs_exist_and_read(micro):
    work, _, _ = micro
    res = work / "results"
    for p in ["tables/micro.csv", "tables/micro.md", "tables/micro_scorers.csv", "tables/micro_scorers.md",
              "figures/micro_feature_norms.png", "figures/micro_local_norms.png"]:
        assert (res / p).stat().st_size > 0, p
    for p in ["figures/micro_feature_norms.png", "figures/micro_local_norms.png"]:
        assert (res / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for seed in SEEDS:
        for v in VARIANTS:
            assert (res / f"micro/seed{seed}/models/{v}.pt").exists()
            assert (work / f"logs/train/micro/seed{seed}/{v}.log").exists()
            assert (work / f"logs/extract/micro/seed{seed}/{v}.log").exists()
            assert (work / f"benchmarks/extract/micro/seed{seed}/{v}.tsv").exists()
    log = (work / "logs/train/micro/seed0/mode.log").read_text()
    assert "finetune[mode] epoch 2/2" in log and "L_alpa" in log and "left)" in log


def test_hdf5_follows_schema(micro):
    work, _, _ = micro
    f = work / "results/micro/seed0/features/lff.h5"
    roles = h5schema.list_splits(f)
    assert roles["train"] == "id_train" and roles["test"] == "id_test"
    assert {n for n, r in roles.items() if r == "ood"} == set(OOD)
    attrs = h5schema.read_attrs(f)
    for key in ("config", "checkpoint_sha256", "versions", "benchmark", "variant", "seed", "dataset_files"):
        assert key in attrs
    assert attrs["id_dataset"] == "embedded"
    assert attrs["variant"] == "lff" and len(attrs["checkpoint_sha256"]) == 64
    w, b = h5schema.read_head(f)
    test = h5schema.read_split(f, "test")
    # the cached logits are the head applied to the cached features
    np.testing.assert_allclose(test["features"] @ w.T + b, test["logits"], rtol=1e-4, atol=1e-4)
    assert test["local_gt_prob"].shape == test["local_norms"].shape
    assert np.all((test["local_gt_prob"] >= 0) & (test["local_gt_prob"] <= 1))
    assert "local_gt_prob" not in h5schema.read_split(f, "far")
    assert test["multiscale"].shape == (len(test["labels"]), 6, 16) and test["multiscale"].dtype == np.float16
    assert "ood_head_global" not in test
    ssod = h5schema.read_split(work / "results/micro/seed0/features/ssod.h5", "far")
    assert ssod["ood_head_global"].shape == ssod["ood_head_local"].shape == (len(ssod["labels"]),)
    assert ((ssod["ood_head_global"] >= 0) & (ssod["ood_head_global"] <= 1)).all()
    assert json.loads(attrs["config"])["objective"] == {"name": "lff", "params": {"delta": 0.3, "mu": 1.0,
                                                                                  "lambda": 0.2}}


def test_table_has_every_row_with_std(micro):
    """The primary table has one row per method with its own scorer; the secondary one every scorer on
    every model, each with mean and spread over seeds."""
    work, _, _ = micro
    own = {"ce": "react", "ce_control": "react", "lff": "react", "ssod": "ssod", "mode": "csd", "logitnorm": "msp",
           "vos": "energy", "npos": "npos_knn", "cider": "cider_knn", "ssd_plus": "ssd", "csi_pre": "msp", "csi": "csi"}
    table = pd.read_csv(work / "results/tables/micro.csv")  # primary: each method with its own scorer
    assert list(table["variant"]) == list(VARIANTS) and dict(zip(table["variant"], table["scorer"])) == own
    every = pd.read_csv(work / "results/tables/micro_scorers.csv")  # every scorer on every model
    assert len(every) == len(VARIANTS) * len(SCORERS) + len(OWN)
    assert set(every["variant"]) == set(VARIANTS) and set(every["scorer"]) == {*SCORERS, *OWN}
    for v, own_s in OWN_SCORERS.items():
        assert set(every[every["scorer"].isin(own_s)]["variant"]) == {v}
    for t in (table, every):
        assert (t["n_seeds"] == len(SEEDS)).all()
        for s in (*OOD, "average"):
            for m in ("auroc", "fpr95", "aupr_in", "aupr_out"):
                assert t[f"{s}/{m}_mean"].between(0, 100).all() and (t[f"{s}/{m}_std"] >= 0).all()
    md = (work / "results/tables/micro.md").read_text()
    assert "primary table" in md.splitlines()[0] and "AUPR-In↑" in md and "AUPR-Out↑" in md
    assert "±" in md and "LFF" in md and "CE control" in md and "MODE-F" in md and "LogitNorm" in md
    assert all(label in md for label in ("VOS", "NPOS", "CIDER", "SSD+", "CSI (stage 1)"))


def test_sensitivity_target(micro):
    work, _, _ = micro
    proc = snakemake(work, "--cores", "2", "results/figures/micro_sensitivity.png", timeout=300)
    counts = job_counts(proc.stdout + proc.stderr)
    # only the new sweep points (lambda 0.5, gamma 0.7); lambda 0.2 and gamma 0.9 are the lff and ssod variants
    assert counts["train"] == 2 * len(SEEDS)
    assert counts["fit_stats"] == len(SEEDS)  # react's statistics, for lff_lambda0.5 only
    assert counts["score"] == 2 * len(SEEDS)  # react on lff_lambda0.5, ssod on ssod_gamma0.7
    df = pd.read_csv(work / "results/tables/micro_sensitivity.csv")
    points = df[df["kind"] == "point"]
    lam, gam = points[points["param"] == "lambda"], points[points["param"] == "gamma"]
    assert sorted(set(lam["value"])) == [0.2, 0.5] and set(lam["variant"]) == {"lff", "lff_lambda0.5"}
    assert sorted(set(gam["value"])) == [0.7, 0.9] and set(gam["variant"]) == {"ssod_gamma0.7", "ssod"}
    assert set(gam["scorer"]) == {"ssod"}
    ref = df[df["kind"] == "reference"]
    assert set(ref["variant"]) == {"ce_control"}
    # SSOD's OOD-head score does not apply to the control: its reference is the control's own scorer
    assert dict(zip(ref["param"], ref["scorer"])) == {"lambda": "react", "gamma": "react"}
    assert len(points) == 4 * len(SEEDS) and points["auroc"].between(0, 100).all()
    assert (work / "results/figures/micro_sensitivity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (work / "results/figures/micro_sensitivity.pdf").read_bytes()[:5] == b"%PDF-"


# ----------------------------------------------------------------------------- figures (built by all)
def _check_figure(work, name):
    """PNG and PDF of results/figures/micro_<name>: 7 inches wide at >= 200 dpi, a complete one-page
    PDF, and no text that the layout check flagged (under 7 pt, clipped, overlapping) in the log."""
    import re
    import struct

    png = (work / f"results/figures/micro_{name}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = struct.unpack(">I", png[16:20])[0]
    i = png.index(b"pHYs")
    dpi = struct.unpack(">I", png[i + 4:i + 8])[0] * 0.0254
    assert dpi >= 199.9 and width / dpi == pytest.approx(7.0, abs=0.01), (width, dpi)
    pdf = (work / f"results/figures/micro_{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-1.") and pdf.rstrip().endswith(b"%%EOF")
    offset = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", pdf).group(1))
    assert pdf[offset:offset + 4] == b"xref" and len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1
    box = [float(x) for x in re.search(rb"/MediaBox\s*\[([^\]]+)\]", pdf).group(1).split()]
    assert box[2] - box[0] == pytest.approx(504.0)  # 7 inches in points


def _log(work, rule):
    text = (work / f"logs/{rule}/micro.log").read_text()
    assert "layout:" not in text, text  # the figure reads at 7 inches
    return text


def test_feature_norm_and_local_norm_figures(micro):
    work, _, _ = micro
    _check_figure(work, "feature_norms")
    _check_figure(work, "local_norms")
    _log(work, "figures")


def test_auroc_bars_figure(micro):
    work, _, _ = micro
    _check_figure(work, "auroc_bars")
    _log(work, "auroc_bars")
    bars = pd.read_csv(work / "results/figures/micro_auroc_bars.csv")
    own = {"ce": "react", "ce_control": "react", "lff": "react", "ssod": "ssod", "mode": "csd", "logitnorm": "msp",
           "vos": "energy", "npos": "npos_knn", "cider": "cider_knn", "ssd_plus": "ssd", "csi_pre": "msp", "csi": "csi"}
    assert list(dict.fromkeys(bars["variant"])) == list(VARIANTS)
    assert dict(zip(bars["variant"], bars["scorer"])) == own  # each method with its own scorer
    table = pd.read_csv(work / "results/tables/micro.csv").set_index(["variant", "scorer"])
    for _, r in bars.iterrows():  # the bars are the table's numbers
        assert r["auroc_mean"] == pytest.approx(table.loc[(r["variant"], r["scorer"]), f"{r['ood_set']}/auroc_mean"],
                                                abs=1e-3)
    assert set(bars["ood_set"]) == {*OOD, "average"} and (bars["n_seeds"] == len(SEEDS)).all()


def test_heatmaps_figure(micro):
    work, _, _ = micro
    _check_figure(work, "heatmaps")
    _log(work, "heatmaps")


def test_tsne_figure(micro):
    work, _, _ = micro
    _check_figure(work, "tsne")
    assert "t-SNE of lff" in _log(work, "tsne")
    with np.load(work / "results/micro/figure_data/tsne_vectors.npz") as z:
        meta = json.loads(str(z["meta"]))
        # config figures.tsne: OOD set textures, 60 points per group
        assert meta["variants"] == ["ce", "lff"] and meta["ood_set"] == "textures" and meta["delta"] == 0.3
        assert z["ce__id"].shape == (60, 16) and z["ce__ood"].shape == (40, 16)  # 60 of 96; the whole OOD set
        assert z["lff__background"].shape == (60, 16)


def test_second_run_has_nothing_to_do(micro):
    work, _, _ = micro
    proc = snakemake(work, "-n", "--cores", "2", "all")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_scorer_table_has_every_scorer_and_variant(micro):
    work, _, _ = micro
    t = pd.read_csv(work / "results/tables/micro_scorers.csv")
    order = (*SCORERS, *SSOD_SCORERS, "cider_knn", "npos_knn", "csi", "ssd")  # micro's scorers.names
    assert list(t["scorer"]) == [s for s in order for v in VARIANTS if s not in OWN or s in OWN_SCORERS.get(v, ())]
    assert list(t["variant"][:len(VARIANTS)]) == list(VARIANTS) and (t["n_seeds"] == len(SEEDS)).all()
    for s in (*OOD, "average"):
        assert t[f"{s}/auroc_mean"].between(0, 100).all() and t[f"{s}/fpr95_std"].ge(0).all()
    md = (work / "results/tables/micro_scorers.md").read_text()
    assert "| DICE+ReAct | LFF |" in md and "| FeatureNorm | CE control |" in md and "| CSD | MODE-F |" in md
    assert "| SSOD | SSOD |" in md and "| SSD+ | SSD+ |" in md and "| CSI | CSI |" in md


def test_statistics_artifacts(micro):
    work, _, _ = micro
    stats = work / "results/micro/seed0/stats/lff"
    assert sorted(p.stem for p in stats.glob("*.h5")) == sorted(
        ["react", "mahalanobis", "vim", "dice", "dice_react", "line", "featurenorm"])
    assert not list((work / "results/micro/seed0/stats/lff").glob("csd.h5"))  # CSD's bank is the feature file
    sel, attrs = h5schema.read_stats(stats / "featurenorm.h5", scorer="featurenorm")
    assert 0 <= int(sel["block"]) < len(sel["ratios"]) == 2  # micro model: blocks [1, 1]
    assert attrs["source"].endswith("features/lff.h5")  # fitted from extraction's block norms
    for v in VARIANTS:
        scores, sattrs = h5schema.read_scores(work / f"results/micro/seed0/scores/{v}/odin.h5")
        assert set(scores) == {"test", *OOD} and sattrs["params"] == {"temperature": 1000.0, "epsilon": 0.0014}


def _changed(work, name, old, new):
    cfg = (work / "config.yaml").read_text()
    assert old in cfg
    (work / name).write_text(cfg.replace(old, new))
    proc = snakemake(work, "-n", "--cores", "2", "all", "--configfile", str(work / name))
    return job_counts(proc.stdout)


def test_scorer_change_reruns_only_that_scorer(micro):
    work, _, _ = micro
    counts = _changed(work, "changed.yaml", "react: {percentile: 90}", "react: {percentile: 80}")
    # react only: its statistics (the clipping level) and its scores, for every model
    assert counts["fit_stats"] == counts["score"] == MODELS
    assert counts["metrics"] == MODELS
    for rule in ("train", "extract", "score_network"):
        assert rule not in counts


def test_score_only_parameter_keeps_statistics(micro):
    work, _, _ = micro
    counts = _changed(work, "dice.yaml", "react: {percentile: 90}", "react: {percentile: 90}\n        dice: {percentile: 70}")
    assert counts["score"] == MODELS and "fit_stats" not in counts  # DICE's mean activations are reused


def test_network_scorer_change_reruns_only_its_jobs(micro):
    """FeatureNorm's block is fitted and scored from cached block norms: only its two jobs rerun. Its
    jigsaw grid is what extraction computes for it: a change re-extracts (and so rescores) every model.
    ODIN's parameters rerun ODIN's network jobs only."""
    work, _, _ = micro
    counts = _changed(work, "fn.yaml", "featurenorm: {block: null, jigsaw_grid: 3}",
                      "featurenorm: {block: 0, jigsaw_grid: 3}")
    assert counts["fit_stats"] == counts["score"] == MODELS  # featurenorm only
    for rule in ("train", "extract", "score_network"):
        assert rule not in counts
    counts = _changed(work, "grid.yaml", "featurenorm: {block: null, jigsaw_grid: 3}",
                      "featurenorm: {block: null, jigsaw_grid: 2}")
    assert counts["extract"] == MODELS and "train" not in counts
    counts = _changed(work, "odin.yaml", "react: {percentile: 90}",
                      "react: {percentile: 90}\n        odin: {epsilon: 0.0}")
    assert counts["score_network"] == MODELS and "fit_stats" not in counts and "score" not in counts


def test_lambda_change_reruns_only_lff_finetuning(micro):
    work, _, _ = micro
    cfg = (work / "config.yaml").read_text().replace("lambda: 0.2", "lambda: 0.5")
    (work / "lam.yaml").write_text(cfg)
    proc = snakemake(work, "-n", "--cores", "2", "all", "--configfile", str(work / "lam.yaml"))
    counts = job_counts(proc.stdout)
    assert counts["train"] == len(SEEDS)  # lff only: no other variant reads lff.lambda
    assert counts["extract"] == len(SEEDS)
    assert "prepare_embedded" not in counts


#: One parameter of every objective and every scorer with parameters, changed to another valid value
#: (a --config form): (section as --config writes it, parameter, new value). Every registered plug-in
#: that runs in the micro configuration must be here (test_every_plugin_is_covered).
OBJECTIVE_CHANGES = {"lff": ("delta", 0.2), "logitnorm": ("tau", 0.05), "ssod": ("gamma", 0.8),
                     "alpa": ("scale", 5.0), "vos": ("loss_weight", 0.2), "npos": ("beta", 0.2), "cider": ("w", 1.0),
                     "ssd_plus": ("temperature", 0.3), "csi": ("tau", 0.1), "csi_linear": ("new_module_lr", 0.05)}
SCORER_CHANGES = {"msp": ("temperature", 2.0), "energy": ("temperature", 2.0), "react": ("percentile", 80),
                  "odin": ("epsilon", 0.0), "vim": ("dim", 8), "knn": ("k", 9), "dice": ("percentile", 70),
                  "dice_react": ("react_percentile", 80), "featurenorm": ("block", 0), "line": ("p_w", 80),
                  "csd": ("k", 4), "cider_knn": ("k", 9), "npos_knn": ("k", 9)}
#: the rules whose jobs carry one scorer's parameters (its statistics, its scores)
SCORER_RULES = ("fit_stats", "score", "score_network", "score_search")
#: rules that read an objective's parameter besides its training: the figures of LFF's background
#: selection draw at lff.delta unless figures.monitor.delta is set
ALSO_READ_BY = {("lff", "delta"): ("figures", "tsne_vectors")}


def planned_jobs(stdout: str) -> list[tuple[str, dict, str]]:
    """``(rule, wildcards, reason)`` of every job a dry run plans."""
    jobs = []
    for m in re.finditer(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", stdout, re.M):
        body = m.group(2)
        wc = re.search(r"^    wildcards: (.*)$", body, re.M)
        reason = re.search(r"^    reason: (.*)$", body, re.M)
        wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), wildcards, reason.group(1) if reason else ""))
    return jobs


def _rerun_scope(work, override: str) -> list[tuple[str, dict, str]]:
    proc = snakemake(work, "-n", "--cores", "2", "all", "--config", override)
    jobs = planned_jobs(proc.stdout)
    assert jobs, f"--config {override}: nothing planned\n{proc.stdout[-2000:]}"
    return jobs


def _only_roots(jobs, is_root, what: str) -> None:
    """Every planned job is a root (a job that reads the changed parameter) or runs only because an input
    is rebuilt by another planned job (downstream of a root): the planned set is exactly the roots and
    what depends on them."""
    for rule, wc, reason in jobs:
        if is_root(rule, wc):
            continue
        assert reason.startswith("Input files updated by another job") and "Params have changed" not in reason, \
            f"{what}: job {rule} {wc} is neither one of its jobs nor downstream of them: {reason[:300]}"


def test_every_plugin_is_covered():
    from lffood.objectives import registered_objectives
    from lffood.scorers import registered_scorers

    used = {o for o in registered_objectives() if registered_objectives()[o].params_schema}
    assert used <= set(OBJECTIVE_CHANGES), f"objectives without a rerun-scope case: {used - set(OBJECTIVE_CHANGES)}"
    with_params = {s for s, cls in registered_scorers().items() if cls.defaults}
    assert with_params <= set(SCORER_CHANGES), f"scorers without a rerun-scope case: {with_params - set(SCORER_CHANGES)}"


@pytest.mark.parametrize("objective", sorted(OBJECTIVE_CHANGES))
def test_objective_parameter_reruns_only_that_method(micro, objective):
    """A parameter of one objective retrains exactly the variants with that objective (every seed) and
    those fine-tuned from them (CSI's stage 2 from its stage 1), and reruns what depends on them; no
    other model is retrained (lff.delta used to retrain all six, since the background monitor of every
    training read it)."""
    work, _, _ = micro
    param, value = OBJECTIVE_CHANGES[objective]
    variants = yaml.safe_load(MICRO.read_text())["benchmarks"]["micro"]["variants"]
    mine = {v for v, spec in variants.items() if spec["objective"] == objective}
    below = set(mine)
    while True:  # the variants fine-tuned from them, at any depth: downstream, retrained because their parent is
        more = {v for v, spec in variants.items() if spec.get("parent") in below} - below
        if not more:
            break
        below |= more
    jobs = _rerun_scope(work, f"{objective}={{{param}: {value}}}")
    trained = {(wc["seed"], wc["variant"]) for rule, wc, _ in jobs if rule == "train"}
    assert trained == {(str(s), v) for s in SEEDS for v in below}, f"{objective}.{param}: retrained {sorted(trained)}"
    also = ALSO_READ_BY.get((objective, param), ())
    _only_roots(jobs, lambda rule, wc: (rule == "train" and wc.get("variant") in mine) or rule in also,
                f"{objective}.{param}")


@pytest.mark.parametrize("scorer", sorted(SCORER_CHANGES))
def test_scorer_parameter_reruns_only_that_scorer(micro, scorer):
    """A parameter of one scorer reruns that scorer's statistics and scores (where it reads them) and
    what depends on them: no training, no extraction, no other scorer."""
    work, _, _ = micro
    param, value = SCORER_CHANGES[scorer]
    jobs = _rerun_scope(work, f"scorers={{params: {{{scorer}: {{{param}: {value}}}}}}}")
    assert {rule for rule, wc, _ in jobs if wc.get("scorer") == scorer and rule in SCORER_RULES}, \
        f"{scorer}.{param}: none of its jobs planned"
    _only_roots(jobs, lambda rule, wc: rule in SCORER_RULES and wc.get("scorer") == scorer, f"{scorer}.{param}")


def test_collapse_fails_clearly_and_writes_nothing(micro):
    work, _, _ = micro
    ckpt = work / "results/micro/seed0/models/lff.pt"
    ckpt.unlink()
    cfg = (work / "config.yaml").read_text().replace("guard: {chance_factor: 1.0, patience: 3}",
                                                    "guard: {min_feature_norm: 1.0e+9, patience: 1}")
    (work / "collapse.yaml").write_text(cfg)
    proc = snakemake(work, "--cores", "1", str(ckpt.relative_to(work)), "--configfile", str(work / "collapse.yaml"),
                     "--rerun-triggers", "mtime", check=False)
    assert proc.returncode != 0
    assert not ckpt.exists()
    assert not list(ckpt.parent.glob(".lff.pt*"))  # no temporary left behind
    log = (work / "logs/train/micro/seed0/lff.log").read_text()
    assert "collapsed" in log and "lff.lambda" in log and "lff.mu" in log


