"""Every artifact proves its integrity on read (lffood.integrity): checkpoints, feature files,
statistics, scores, metrics, the tidy metrics and the resume state carry a manifest with their
sha256 and their inputs' hashes. Flipped bytes or a truncation are refused naming the file, what
differs and the command that rebuilds it (a resume state is ignored: training starts over); a file
made from an input that changed since is refused as stale; metrics missing rows are refused naming
the seed, scorer and OOD set."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import MICRO, SCHEMA
from lffood import h5schema, integrity, pipeline
from lffood.checkpoint import ResumeFile, load_checkpoint, save_checkpoint
from lffood.cli import main
from lffood.errors import IntegrityError
from lffood.models import build_model
from lffood.report.tables import collect, write_tables
from lffood.training import train
from test_models_training import LFF, NO_GUARD, SMALL, _data, _stage, obj

K = 3
TINY = {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}


@pytest.fixture(autouse=True)
def _fresh():
    integrity.forget()
    yield
    integrity.forget()


def flip(path, n=8):
    """Flip ``n`` bytes in the middle of ``path``, in place (same size)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(n):
        data[mid + i] ^= 0xA5
    path.write_bytes(bytes(data))
    integrity.forget()  # in place within one clock tick: this process must not trust what it verified


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    integrity.forget()


def _split(feats, labels, role):
    rng = np.random.default_rng(0)
    d = {"logits": feats.astype(np.float32), "features": feats.astype(np.float32), "labels": labels.astype(np.int64),
         "preds": feats.argmax(1).astype(np.int64), "local_norms": rng.uniform(size=(len(feats), 4)).astype(np.float32)}
    if role != "ood":
        d["local_gt_prob"] = rng.uniform(size=(len(feats), 4)).astype(np.float32)
    return d


def _features(path, ckpt, seed=1):
    rng = np.random.default_rng(seed)

    def id_feats(n):
        lab = rng.integers(0, K, n)
        return rng.uniform(0, 0.5, (n, K)) + 5 * np.eye(K)[lab], lab

    (tr, trl), (te, tel) = id_feats(30), id_feats(20)
    far, near = rng.uniform(0, 0.5, (15, K)), rng.uniform(0, 2, (15, K))
    # as run_extraction writes it: the checkpoint and its hash, which the manifest records as its input
    h5schema.write_features(path, head_weight=np.eye(K), head_bias=np.zeros(K),
                            splits={"train": _split(tr, trl, "id_train"), "test": _split(te, tel, "id_test"),
                                    "far": _split(far, np.full(15, -1), "ood"),
                                    "near": _split(near, np.full(15, -1), "ood")},
                            roles={"train": "id_train", "test": "id_test", "far": "ood", "near": "ood"},
                            attrs={"benchmark": "toy", "checkpoint": str(ckpt),
                                   "checkpoint_sha256": integrity.current_hash(ckpt)})


def _checkpoint(path, seed=0):
    torch.manual_seed(seed)
    save_checkpoint(path, build_model(TINY, K), {"model": TINY, "num_classes": K, "classes": list("abc"), "seed": 0})


@pytest.fixture
def chain(tmp_path):
    """Every kind of artifact, written by the project's writers, each from the one before."""
    d = tmp_path / "results"
    d.mkdir()
    a = {"checkpoint": d / "ce.pt", "features": d / "ce.h5", "stats": d / "react_stats.h5"}
    _checkpoint(a["checkpoint"])
    _features(a["features"], a["checkpoint"])
    pipeline.run_fit_stats(str(a["features"]), "react", {}, str(a["stats"]))
    scores = {}
    for name in ("msp", "react"):
        scores[name] = str(d / f"{name}.h5")
        pipeline.run_scoring(str(a["features"]), name, {}, scores[name],
                             stats_path=str(a["stats"]) if name == "react" else None)
    a["scores"] = d / "react.h5"
    a["metrics"] = d / "metrics.csv"
    pipeline.run_metrics(str(a["features"]), scores, str(a["metrics"]), {"benchmark": "toy", "variant": "ce", "seed": 0})
    a["tidy"] = d / "metrics_all.csv"
    out = {k: d / f"table.{k}" for k in ("csv", "md", "tex")}
    write_tables([str(a["metrics"])], csv=str(out["csv"]), md=str(out["md"]), tex=str(out["tex"]), tidy=str(a["tidy"]),
                 title="t", labels={"ce": "CE"})
    return a, scores


# how each kind is read in the workflow
READERS = {
    "checkpoint": lambda a, s: load_checkpoint(a["checkpoint"]),
    "features": lambda a, s: pipeline.run_scoring(str(a["features"]), "energy", {}, str(a["features"].parent / "e.h5")),
    "stats": lambda a, s: pipeline.run_scoring(str(a["features"]), "react", {}, str(a["features"].parent / "r2.h5"),
                                               stats_path=str(a["stats"])),
    "scores": lambda a, s: pipeline.run_metrics(str(a["features"]), s, str(a["features"].parent / "m2.csv"),
                                                {"variant": "ce", "seed": 0}),
    "metrics": lambda a, s: collect([str(a["metrics"])]),
    "tidy": lambda a, s: integrity.verify(a["tidy"]),  # lffood results reads it (test_results_... below)
}


def test_every_artifact_records_its_hash_and_its_inputs(chain):
    a, scores = chain
    m = {k: json.loads(integrity.manifest_path(p).read_text()) for k, p in a.items()}
    for kind, p in a.items():
        assert m[kind]["sha256"] == integrity.sha256_file(p) and m[kind]["bytes"] == p.stat().st_size, kind
        READERS[kind](a, scores)  # intact: read without complaint
    h = {k: v["sha256"] for k, v in m.items()}
    assert m["checkpoint"]["inputs"] == {}
    assert m["features"]["inputs"] == {str(a["checkpoint"]): h["checkpoint"]}
    assert h5schema.read_attrs(a["features"])["checkpoint_sha256"] == h["checkpoint"]
    assert m["stats"]["inputs"] == {str(a["features"]): h["features"]}
    assert m["scores"]["inputs"] == {str(a["features"]): h["features"], str(a["stats"]): h["stats"]}
    assert m["metrics"]["inputs"] == {str(a["features"]): h["features"],
                                      **{p: integrity.sha256_file(p) for p in scores.values()}}
    assert m["metrics"]["rows"] == {"labels": {"benchmark": "toy", "variant": "ce", "seed": 0},
                                    "scorers": ["msp", "react"], "ood_sets": ["far", "near"]}
    assert m["tidy"]["inputs"] == {str(a["metrics"]): h["metrics"]}


@pytest.mark.parametrize("damage", [flip, truncate])
@pytest.mark.parametrize("kind", list(READERS))
def test_damaged_artifact_is_refused_naming_file_difference_and_rebuild(chain, kind, damage):
    a, scores = chain
    path = a[kind]
    damage(path)
    with pytest.raises(IntegrityError) as exc:
        READERS[kind](a, scores)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: ") and f"snakemake --force {path}" in msg, msg
    if damage is flip:
        assert f"content sha256 {integrity.sha256_file(path)}, but its manifest records " in msg, msg
    else:
        size = path.stat().st_size
        assert f"{size} bytes, but its manifest records {2 * size} bytes" in msg or \
            f"{size} bytes, but its manifest records {2 * size + 1} bytes" in msg, msg
        assert "truncated" in msg


def test_file_without_manifest_is_refused(chain):
    a, scores = chain
    for kind in ("checkpoint", "scores", "metrics"):
        integrity.manifest_path(a[kind]).unlink()
        integrity.forget()  # a process that verified the file before its manifest went keeps trusting it
        with pytest.raises(IntegrityError, match=rf"^{a[kind]}: no integrity manifest .*snakemake --force {a[kind]}"):
            READERS[kind](a, scores)


def test_manifest_of_another_file_is_refused(chain):
    a, scores = chain
    integrity.manifest_path(a["stats"]).write_bytes(integrity.manifest_path(a["scores"]).read_bytes())
    integrity.forget()
    with pytest.raises(IntegrityError, match="describes another file"):
        READERS["stats"](a, scores)


def test_feature_file_of_another_checkpoint_is_refused(chain):
    """The feature file records the checkpoint's hash (attribute checkpoint_sha256 and its manifest);
    a checkpoint rebuilt since (other weights) makes it stale: refused, both hashes named."""
    a, scores = chain
    before = integrity.current_hash(a["checkpoint"])
    _checkpoint(a["checkpoint"], seed=1)
    after = integrity.current_hash(a["checkpoint"])
    assert after != before
    integrity.forget()
    with pytest.raises(IntegrityError) as exc:
        h5schema.read_split(a["features"], "test")
    msg = str(exc.value)
    assert msg.startswith(f"{a['features']}: made from {a['checkpoint']} with sha256 {before}, but ")
    assert f"now has sha256 {after}" in msg and "stale" in msg and f"snakemake --force {a['features']}" in msg


def test_statistics_and_scores_of_another_feature_file_are_refused(chain):
    a, scores = chain
    _features(a["features"], a["checkpoint"], seed=2)  # extraction rerun: other features
    for kind in ("stats", "scores"):
        integrity.forget()
        with pytest.raises(IntegrityError, match=rf"^{a[kind]}: made from {a['features']} with sha256 .* stale"):
            h5schema.read_stats(a[kind]) if kind == "stats" else h5schema.read_scores(a[kind])


def test_metrics_missing_rows_are_refused_naming_seed_scorer_and_ood_set(chain):
    a, _ = chain
    path = a["metrics"]
    df = pd.read_csv(path)
    cut = df[~((df["scorer"] == "react") & (df["ood_set"] == "near"))]
    manifest = json.loads(integrity.manifest_path(path).read_text())
    cut.to_csv(path, index=False)
    integrity.seal(path, extra={"rows": manifest["rows"]})  # even with a manifest made to match
    with pytest.raises(IntegrityError) as exc:
        collect([str(path)])
    msg = str(exc.value)
    assert msg.startswith(f"{path}: incomplete metrics: 1 row(s) missing (seed 0, variant ce, scorer react, "
                          "OOD set near)"), msg
    assert f"snakemake --force {path}" in msg


def test_metrics_of_a_seed_missing_for_one_model_are_refused(chain, tmp_path):
    """Two seeds of one model, one of another: the table would average the second over one seed."""
    a, scores = chain
    files = []
    for variant, seed in (("ce", 0), ("ce", 1), ("lff", 0)):
        out = tmp_path / f"m_{variant}_{seed}.csv"
        pipeline.run_metrics(str(a["features"]), scores, str(out), {"benchmark": "toy", "variant": variant, "seed": seed})
        files.append(str(out))
    collect(files[:2])  # complete: both seeds of ce
    with pytest.raises(IntegrityError) as exc:
        collect(files)
    msg = str(exc.value)
    assert "4 row(s) missing" in msg and "seed 1, variant lff, scorer msp, OOD set far" in msg, msg
    assert "seed 1, variant lff, scorer react, OOD set near" in msg
    # a seed's file that holds another seed's rows: the rows it should hold are named
    other = pd.read_csv(files[1]).assign(seed=0)
    other.to_csv(files[1], index=False)
    integrity.seal(files[1], extra={"rows": json.loads(integrity.manifest_path(files[0]).read_text())["rows"]
                                    | {"labels": {"benchmark": "toy", "variant": "ce", "seed": 1}}})
    with pytest.raises(IntegrityError, match=r"4 row\(s\) missing \(seed 1, variant ce, scorer msp, OOD set far"):
        collect(files[:2])


def _micro_tidy(results, seeds=(0,)):
    """A tidy metrics file (metrics_all.csv) of the micro benchmark as the table rule writes it."""
    from lffood.config import load_config
    from lffood.variants import variant_names, variant_scorers

    b = load_config(MICRO, SCHEMA)["benchmarks"]["micro"]
    rows = [{"benchmark": "micro", "variant": v, "seed": s, "scorer": sc, "ood_set": o, "auroc": 80.0 + s,
             "fpr95": 40.0, "aupr_in": 70.0, "aupr_out": 60.0, "id_acc": 90.0,
             **{f"{m}_se": 0.5 for m in ("auroc", "fpr95", "aupr_in", "aupr_out", "id_acc")}}
            for v in variant_names(b) for s in seeds for sc in variant_scorers(b, v) for o in b["dataset"]["ood_sets"]]
    path = results / "micro" / "metrics_all.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with integrity.sealed_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    _micro_comparison(results, b, len(seeds))
    return path


def _micro_comparison(results, b, n_seeds):
    """The comparison with the CE control (results/tables/micro_vs_control.csv) as rule compare writes it."""
    from lffood.report import compare

    rows = [{"method": c.method, "label": c.label, "scorer": c.scorer, "control_scorer": c.control_scorer,
             "metric": m, "ood_set": o, "n_seeds": n_seeds, "diff": 1.0, "ci_low": -1.0, "ci_high": 3.0, "df": 4.0,
             "se_seeds": 0.5, "se_test": 0.5, "verdict": "tie", "seeds_in_interval": n_seeds > 1, "level": 0.95,
             "bootstrap": 1000}
            for c in compare.comparisons(b, "ce_control") for m in compare.COMPARED
            for o in [*b["dataset"]["ood_sets"], "average"]]
    path = results / compare.RELATIVE.format(bench="micro", ext="csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with integrity.sealed_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return path


def test_results_verifies_the_tidy_metrics_and_their_completeness(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load(MICRO.read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    path = _micro_tidy(tmp_path / "results")
    assert main(["results", "--config", "config.yaml", "--schema", str(SCHEMA)]) == 0
    capsys.readouterr()
    flip(path)
    assert main(["results", "--config", "config.yaml", "--schema", str(SCHEMA)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: results/micro/metrics_all.csv: content sha256 ") and \
        "snakemake --force results/micro/metrics_all.csv" in err
    # complete for the one seed it was made for, but the config now asks for two
    _micro_tidy(tmp_path / "results")
    cfg["benchmarks"]["micro"]["seeds"] = [0, 1]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["results", "--config", "config.yaml", "--schema", str(SCHEMA)]) == 1
    err = capsys.readouterr().err
    assert "results/micro/metrics_all.csv: incomplete metrics: " in err and "row(s) missing (seed 1, variant" in err
    assert "scorer msp, OOD set backgrounds" in err
    # the comparison with the control is verified too, and must be of the configured seeds
    from lffood.config import load_config

    _micro_tidy(tmp_path / "results", seeds=(0, 1))
    b = load_config(tmp_path / "config.yaml", SCHEMA)["benchmarks"]["micro"]
    cmp_path = _micro_comparison(tmp_path / "results", b, 1)  # made when the config had one seed
    assert main(["results", "--config", "config.yaml", "--schema", str(SCHEMA)]) == 1
    err = capsys.readouterr().err
    assert "results/tables/micro_vs_control.csv compares" in err and "over [1] seed(s)" in err
    assert "snakemake results/tables/micro_vs_control.csv" in err
    _micro_comparison(tmp_path / "results", b, 2)
    assert main(["results", "--config", "config.yaml", "--schema", str(SCHEMA)]) == 0
    assert "+1.0 [−1.0, +3.0] tie" in capsys.readouterr().out
    flip(cmp_path)
    assert main(["results", "--config", "config.yaml", "--schema", str(SCHEMA)]) == 1
    assert capsys.readouterr().err.startswith("error: results/tables/micro_vs_control.csv: content sha256 ")


@pytest.mark.parametrize("damage", [flip, truncate])
def test_damaged_resume_state_is_ignored_and_training_starts_over(tmp_path, caplog, damage):
    """A resume state whose bytes differ from its manifest is never resumed from: the job trains from
    the first epoch (and ends with the weights of an uninterrupted run), saying why."""

    class Killed(Exception):
        pass

    def run(resume=None, kill_at=None):
        from lffood.hooks import OnEpoch

        torch.manual_seed(0)
        model = build_model(SMALL, 4)

        def progress(row):
            if row["epoch"] == kill_at:
                raise Killed

        try:
            hist = train(model, _data(), _stage(epochs=3), objective=obj("lff", LFF), seed=0, device=torch.device("cpu"),
                         guard=NO_GUARD, hooks=[OnEpoch(progress)], resume=resume)
        except Killed:
            return None, None
        return model, hist

    ref, _ = run()
    resume = ResumeFile(tmp_path / "m.resume.pt", "fp", max_cost=None)
    assert run(resume, kill_at=3)[0] is None
    assert resume.load(torch.device("cpu"))["epoch"] == 2  # intact: it would resume after epoch 2
    damage(resume.path)
    with caplog.at_level(logging.WARNING):
        model, hist = run(resume)
    assert [h["epoch"] for h in hist] == [1, 2, 3]  # from the first epoch, not after the saved one
    assert f"ignoring the resume state {resume.path}" in caplog.text
    assert "content sha256" in caplog.text and "damaged (flipped bytes or truncated)" in caplog.text
    assert "resuming after epoch" not in caplog.text
    for x, y in zip(ref.state_dict().values(), model.state_dict().values()):
        assert torch.equal(x, y)


def test_resume_state_without_integrity_header_is_ignored(tmp_path, caplog):
    """The resume state embeds its hash (one file, so no kill between two writes can leave a good state
    refused); a state without it (torn, or of an older lffood) is not resumed from either."""
    resume = ResumeFile(tmp_path / "m.resume.pt", "fp")
    resume.save({"epoch": 1})
    data = resume.path.read_bytes()
    assert data.startswith(ResumeFile.MAGIC) and resume.load(torch.device("cpu"))["epoch"] == 1
    resume.path.write_bytes(data[len(ResumeFile.MAGIC) + 32:])  # a bare torch.save file, as older versions wrote
    with caplog.at_level(logging.WARNING):
        assert resume.load(torch.device("cpu")) is None
    assert "no integrity header" in caplog.text
    resume.remove()
    assert list(tmp_path.iterdir()) == []


def test_values_and_bytes_unchanged_by_sealing(chain, tmp_path):
    """The manifest is beside the artifact, never in it: the bytes are what the writer made, and the
    same inputs give the same bytes and the same hash."""
    a, scores = chain
    again = tmp_path / "again.csv"
    pipeline.run_metrics(str(a["features"]), scores, str(again), {"benchmark": "toy", "variant": "ce", "seed": 0})
    assert again.read_bytes() == a["metrics"].read_bytes()
    assert integrity.current_hash(again) == integrity.current_hash(a["metrics"])
    ckpt = tmp_path / "again.pt"
    _checkpoint(ckpt)
    assert ckpt.read_bytes() == a["checkpoint"].read_bytes()
