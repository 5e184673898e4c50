"""`lffood gpu-check` (lffood.gpucheck): the whole check on the CPU with the tiny model, so that it cannot rot;
the projection's arithmetic on a hand-computed case; the paper plan; the CLI subcommand."""

import json

import pytest
import torch

from conftest import REPO, SCHEMA  # noqa: E402
from lffood import costs, gpucheck, projection
from lffood.cli import main
from lffood.config import load_config

torch.set_num_threads(1)  # two threads on a busy 2-core machine spin on each other (as the other model tests)

PAPER = ["cifar10_resnet34", "cifar100_resnet34", "cifar10_wrn28_10", "cifar100_wrn28_10", "imagenet100_resnet50"]
OBJECTIVES = {"ce", "lff", "ssod", "alpa", "logitnorm"}
#: the training baselines (issue 21) at the batch each paper benchmark trains them with (config.yaml)
BASELINES_R34 = {("vos", 128), ("npos", 256), ("cider", 512), ("ssd_plus", 512), ("csi", 128), ("csi_linear", 32)}
BASELINES_R50 = {("vos", 128), ("npos", 256), ("cider", 256), ("ssd_plus", 256), ("csi", 64), ("csi_linear", 32)}
ALL_OBJECTIVES = OBJECTIVES | {o for o, _ in BASELINES_R34}
TWO_VIEWS = {"alpa", "npos", "cider", "ssd_plus", "csi"}


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "config.yaml", SCHEMA)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One run of the check: --tiny --device cpu --no-rehearsal; its exit code, JSON file and printed summary."""
    out = tmp_path_factory.mktemp("gpucheck") / "gc.json"
    printed = []
    rc = gpucheck.run_check(out, device_name="cpu", tiny=True, rehearsal=False, echo=printed.append,
                            argv=["--tiny", "--device", "cpu", "--no-rehearsal"])
    return rc, json.loads(out.read_text()), "\n".join(printed)


def test_tiny_check_writes_every_section(tiny):
    rc, data, _ = tiny
    assert rc == 0 and data["ok"] is True
    assert data["device"]["type"] == "cpu" and data["device"]["torch"] == torch.__version__
    assert "commit" in data["provenance"] and data["settings"]["tiny"] is True
    setups = {s["name"] for s in data["settings"]["setups"]}
    assert len(setups) == 2  # CIFAR-shaped, and ImageNet-shaped (stored larger, cropped, host-kept)
    for setup in setups:
        rows = [r for r in data["training"] if r["setup"] == setup]
        assert {r["objective"] for r in rows} == ALL_OBJECTIVES
        for r in rows:
            assert r["images_per_s"] > 0 and isinstance(r["syncs_per_step"], int)
            assert r["peak_memory_gb"] is None and r["cuda_syncs_per_step"] is None  # CPU
            assert r["views"] == (2 if r["objective"] in TWO_VIEWS else 1)
        ext = {r["split"]: r for r in data["extraction"] if r["setup"] == setup}
        assert set(ext) == {"train", "eval"} and all(r["images_per_s"] > 0 for r in ext.values())
        assert "block_norms" in ext["train"]["fields"] and "multiscale" in ext["train"]["fields"]
        scorers = [r for r in data["scorers"] if r["setup"] == setup]
        assert [r["scorer"] for r in scorers] == ["odin"] and scorers[0]["images_per_s"] > 0
    # device-resident splits (every CIFAR split): no host synchronisation in a step
    cifar = [r for r in data["training"] if not r["host_kept"]]
    assert cifar and all(r["syncs_per_step"] == 0 for r in cifar)
    ddp = data["ddp"]
    assert ddp["ok"] is True and ddp["backend"] == "gloo" and ddp["images_per_s"] > 0 and ddp["checkpoint_written"]
    assert data["rehearsal"] == {"ran": False, "ok": None, "skipped": "--no-rehearsal"}
    assert data["workdir"] is None  # the temporary folder is gone after a successful run


def test_tiny_check_projects_every_paper_benchmark(tiny, cfg):
    _, data, _ = tiny
    projected = data["projection"]["benchmarks"]
    assert list(projected) == PAPER and data["projection"]["cores"] >= 1
    for name, p in projected.items():
        variants = list(cfg["benchmarks"][name]["variants"])
        assert p["seeds"] == 3 and not p["missing"]
        rows = p["rows"]
        assert {r["variant"] for r in rows if r["stage"] == "train"} == set(variants)
        assert {r["variant"] for r in rows if r["stage"] == "extract"} == set(variants)
        assert {r["variant"] for r in rows if r["stage"] == "odin"} == set(variants)
        assert all(r["minutes"] > 0 for r in rows)
        # the GPU stages, the k-NN search at the rate the check measured, the CPU scorers from the cost model
        assert set(p["stages"]) == {"train", "extract", "network", "knn_gpu", "cpu_scorers"}
        assert all(m > 0 for m in p["stages"].values()) and p["knn_cpu"] > 0
        assert p["stages"]["train"] + p["stages"]["extract"] + p["stages"]["network"] == pytest.approx(
            sum(r["minutes"] for r in rows), rel=1e-3)
        assert p["total_minutes"] == pytest.approx(sum(p["stages"].values()), rel=1e-3)


def test_tiny_check_prints_the_summary(tiny):
    _, data, printed = tiny
    lines = printed.splitlines()
    assert lines[0].startswith("gpu-check on cpu") and "--tiny" in lines[0]
    # CIFAR-shaped: 11 objectives, SSD+ at two batches (512 on ResNet-34, 256 on WRN-28-10); ImageNet-shaped: 11
    assert sum(line.startswith("train ") for line in lines) == len(data["training"]) == 23
    assert sum(line.startswith("extract ") for line in lines) == 4
    assert any(line.startswith("score ") and "odin" in line for line in lines)
    assert any(line.startswith("ddp: torchrun, 1 process (gloo)") and ": ok," in line for line in lines)
    assert "rehearsal: skipped (--no-rehearsal)" in lines
    for name in PAPER:
        assert any(line.strip().startswith(name) and "total" in line for line in lines)
    assert lines[-1].startswith("wrote ")


BASELINE_RATES = {("vos", 128): 1000.0, ("npos", 256): 500.0, ("cider", 512): 500.0, ("ssd_plus", 512): 500.0,
                  ("csi", 128): 250.0, ("csi_linear", 32): 2000.0}


def test_projection_arithmetic_by_hand(cfg):
    """cifar10_resnet34 as configured (three seeds; CE 100 epochs, LogitNorm 200, the fine-tuned variants 30, MODE-F 500; batch
    128; the baselines: VOS 100, NPOS 500 at batch 256, CIDER 500 at 512, SSD+ 200 at 512, CSI 100 + 100 at 128 and 32)
    with made-up rates."""
    bench = cfg["benchmarks"]["cifar10_resnet34"]
    rates = projection.Rates(train={("ce", 128): 1000.0, ("lff", 128): 500.0, ("ssod", 128): 500.0,
                                  ("alpa", 128): 250.0, ("logitnorm", 128): 1000.0, **BASELINE_RATES},
                           extract_train=2000.0, extract_eval=4000.0, network={"odin": 1000.0})
    p = projection.project(bench, rates)
    epoch = 390 * 128  # 50,000 training images, the last partial batch dropped
    ood = 10_000 + 10_000 + 10_000 + 8_925 + 5_640 + 10_000  # SVHN and Places365 capped at 10,000
    assert p["sizes"] == {"train": 50_000, "test": 10_000, "ood": {"svhn": 10_000, "lsun_crop": 10_000,
                          "lsun_resize": 10_000, "isun": 8_925, "textures": 5_640, "places365": 10_000}}
    train = {r["variant"]: r["minutes"] for r in p["stages"] if r["stage"] == "train"}
    minutes = {"ce": 100 * epoch / 1000, "ce_control": 30 * epoch / 1000, "lff": 30 * epoch / 500,
               "ssod": 30 * epoch / 500, "mode": 500 * epoch * 2 / 250, "logitnorm": 200 * epoch / 1000,
               # two views: npos, cider, ssd_plus, csi; each epoch drops its last partial batch (195 x 256, 97 x 512,
               # 1562 x 32 images)
               "vos": 100 * epoch / 1000, "npos": 500 * 195 * 256 * 2 / 500, "cider": 500 * 97 * 512 * 2 / 500,
               "ssd_plus": 200 * 97 * 512 * 2 / 500, "csi_pre": 100 * epoch * 2 / 250, "csi": 100 * 1562 * 32 / 2000}
    assert train == pytest.approx({v: 3 * s / 60 for v, s in minutes.items()}, abs=1e-3)
    assert train["mode"] == pytest.approx(9984.0, abs=1e-3)  # 500 epochs x 49,920 images x 2 views / 250 per s x 3
    extract = 50_000 / 2000 + (10_000 + ood) / 4000
    odin = (10_000 + ood) / 1000
    assert [r["minutes"] for r in p["stages"] if r["stage"] == "extract"] == pytest.approx([3 * extract / 60] * 12,
                                                                                           abs=1e-3)
    assert [r["minutes"] for r in p["stages"] if r["stage"] == "odin"] == pytest.approx([3 * odin / 60] * 12, abs=1e-3)
    total = 3 * (sum(minutes.values()) + 12 * extract + 12 * odin) / 60
    assert p["total_minutes"] == pytest.approx(total, abs=1e-2)
    # the six methods 11107.2 minutes; the baselines 4992 + 99840 + 99328 + 39731.2 + 39936 + 2499.2 s x 3 / 60
    assert p["minutes_by_stage"]["train"] == pytest.approx(11107.2 + 14316.32, abs=1e-2)
    assert p["sweeps"] == {"points": 0, "total_minutes": 0, "missing": []}


def test_projection_of_an_imported_model_and_of_a_missing_rate(cfg):
    bench = json.loads(json.dumps(cfg["benchmarks"]["cifar100_resnet34"]))
    bench["variants"]["ce"]["checkpoint"] = "ce.pth"  # imported: nothing to train
    rates = projection.Rates(train={("ce", 128): 1000.0, ("lff", 128): 500.0, ("ssod", 128): 500.0,
                                  ("logitnorm", 128): 1000.0, **BASELINE_RATES},  # no ALPA rate
                           extract_train=2000.0, extract_eval=4000.0, network={"odin": 1000.0})
    p = projection.project(bench, rates)
    trained = [r["variant"] for r in p["stages"] if r["stage"] == "train"]
    assert "ce" not in trained and "mode" in trained
    assert p["total_minutes"] is None and p["missing"] == ["train mode"]
    # sweep points (the sensitivity figure) are projected apart: fine-tuned like their base variant
    assert p["sweeps"]["points"] == 15 and p["sweeps"]["total_minutes"] > 0


def test_data_sizes(cfg):
    imagenet = costs.data_sizes(cfg["benchmarks"]["imagenet100_resnet50"])
    assert imagenet["train"] == 100 * costs.IMAGENET_TRAIN_PER_CLASS and imagenet["test"] == 5_000
    assert imagenet["ood"] == {"inaturalist": 10_000, "sun": 10_000, "places": 10_000, "textures": 5_640}


def test_paper_plan(cfg):
    """What a GPU run measures: three architectures at the paper's sizes and batches."""
    setups = {s.name: s for s in gpucheck.plan_setups(cfg, PAPER)}
    assert set(setups) == {"resnet34 32px", "wrn28_10 32px", "resnet50 256px->224"}
    r34, wrn, r50 = setups["resnet34 32px"], setups["wrn28_10 32px"], setups["resnet50 256px->224"]
    assert r34.benchmarks == ["cifar10_resnet34", "cifar100_resnet34"] and not r34.host_kept
    assert {t.key for t in r34.trainings} == {(o, 128) for o in OBJECTIVES} | BASELINES_R34
    assert wrn.model == {"arch": "wrn28_10", "dropout": 0.0}
    assert {t.key for t in wrn.trainings} == {(o, 128) for o in OBJECTIVES} | BASELINES_R34 - {("ssd_plus", 512)} \
        | {("ssd_plus", 256)}  # SSD+ on WRN-28-10 at batch 256 (memory)
    assert {t.key for t in r50.trainings} == {(o, 256) for o in OBJECTIVES} | BASELINES_R50
    assert r50.host_kept and r50.crop == 224 and r50.extraction["center_crop"] == 224
    assert r50.network["odin"]["epsilon"] == 0.0 and r34.network["odin"]["epsilon"] == 0.0014
    ce = next(t for t in r50.trainings if t.key[0] == "ce")
    assert ce.spec["stage"]["augment"]["random_resized_crop"]["size"] == 224 and ce.spec["stage"]["epochs"] == 90


def test_cli_subcommand_is_registered(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gpu-check", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(opt in out for opt in ("--tiny", "--no-rehearsal", "--rehearsal-benchmarks", "--budget-s", "--workdir"))


def test_cli_passes_its_options(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(gpucheck, "run_check", lambda out, **kw: seen.update(out=out, **kw) or 0)
    monkeypatch.setattr("lffood.runtime.setup_logging", lambda *a, **k: None)
    assert main(["gpu-check", "--out", str(tmp_path / "x.json"), "--device", "cpu", "--tiny", "--no-rehearsal",
                 "--rehearsal-benchmarks", "cifar10_resnet34", "--budget-s", "60"]) == 0
    assert seen["out"] == str(tmp_path / "x.json") and seen["device_name"] == "cpu" and seen["tiny"] is True
    assert seen["rehearsal"] is False and seen["rehearsal_benchmarks"] == ["cifar10_resnet34"]
    assert seen["budget_s"] == 60 and seen["ddp"] is True and seen["argv"][:2] == ["--out", str(tmp_path / "x.json")]


def test_a_late_or_failed_measurement_is_recorded_and_the_check_goes_on():
    cpu = torch.device("cpu")
    assert gpucheck._attempt({"a": 1}, gpucheck.Deadline(-1), cpu, "late", lambda: {"b": 2}) == {
        "a": 1, "skipped": "time budget spent"}
    failed = gpucheck._attempt({"a": 1}, gpucheck.Deadline(60), cpu, "failing", lambda: 1 / 0)
    assert failed["a"] == 1 and failed["error"].startswith("ZeroDivisionError")
    assert gpucheck._attempt({"a": 1}, gpucheck.Deadline(60), cpu, "ok", lambda: {"b": 2}) == {"a": 1, "b": 2}


def test_cuda_sync_counter_counts_cudas_reports_and_passes_other_warnings_on(monkeypatch):
    """CUDA's sync debug mode reports each synchronising operation as a warning (no GPU here: the mode is faked)."""
    import warnings

    from lffood.bench import CudaSyncCounter, syncs_per_step

    modes = []
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def epoch(steps):
        for _ in range(steps + 1):  # one per step, one per epoch
            warnings.warn("called a synchronizing CUDA operation")

    with pytest.warns(UserWarning, match="unrelated"):
        with CudaSyncCounter() as c:
            epoch(2)
            warnings.warn("unrelated")
    assert c.count == 3 and modes == ["warn", 0]
    assert syncs_per_step(epoch, 2, 4, counter=CudaSyncCounter) == 1


def test_paper_sizes_on_the_cpu_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("lffood.runtime.setup_logging", lambda *a, **k: None)
    assert main(["gpu-check", "--device", "cpu", "--out", str(tmp_path / "gc.json")]) == 1
    assert "--tiny" in capsys.readouterr().err and not (tmp_path / "gc.json").exists()


def test_concurrent_training_runs_the_jobs_and_sums_their_loops():
    """One job, then two side by side (on the CPU here): each a `lffood smoke` process with its GPU-slot
    setting; the summed rate is the sum of the loops' rates and the speed-up is against one job."""
    rows = costs.measure_concurrent_training((1, 2), arch="resnet18", size=16, n=32, batch=16, epochs=1,
                                             device_name="cpu", timeout_s=300)
    assert [r["jobs"] for r in rows] == [1, 2]
    for r in rows:
        assert len(r["per_job_images_per_s"]) == r["jobs"] and all(v > 0 for v in r["per_job_images_per_s"])
        assert r["summed_images_per_s"] == pytest.approx(sum(r["per_job_images_per_s"]))
        assert r["aggregate_images_per_s"] == pytest.approx(r["jobs"] * 32 / r["wall_s"])
    assert rows[0]["speedup"] == 1.0
    assert rows[1]["speedup"] == pytest.approx(rows[1]["summed_images_per_s"] / rows[0]["summed_images_per_s"])


def test_jobs_per_gpu_loops_are_sized_from_the_measured_rate():
    """About 10 s of training per job alone: ceil(10 x rate / 4096) epochs of 4096 images, 1 to 200."""
    assert gpucheck.jobs_per_gpu_epochs(8000.0) == 20  # 80,000 images / 4096 = 19.5
    assert gpucheck.jobs_per_gpu_epochs(100.0) == 1
    assert gpucheck.jobs_per_gpu_epochs(1e6) == 200
    assert gpucheck.jobs_per_gpu_epochs(None) == 20


def test_the_device_script_runs_the_check_and_the_projection(tmp_path):
    """tests/perf/gpu_check_on_device.sh, with --tiny --device cpu passed through to gpu-check: it
    writes the JSON file, the log and the projection from the file's rates into $OUT."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "OUT": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", str(REPO / "tests/perf/gpu_check_on_device.sh"), "--tiny", "--device", "cpu"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["ok"] and data["rehearsal"]["skipped"] == "--no-rehearsal"
    assert "gpu-check on cpu" in (tmp_path / "gpu_check.log").read_text()
    projected = (tmp_path / "projection.txt").read_text()
    assert all(b in projected for b in PAPER) and "from the rates in" in projected
