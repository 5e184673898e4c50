"""Device selection: CPU fallback, CUDA_VISIBLE_DEVICES in the log, and one GPU slot per job when
several GPUs are visible (fake device counts; no GPU needed)."""

import logging
import subprocess
import sys
import textwrap

import pytest
import torch

from lffood import runtime
from lffood.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_slot(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.GPU_LOCK_DIR_ENV, str(tmp_path / "locks"))
    runtime.release_gpu_slot()
    yield
    runtime.release_gpu_slot()


def fake_cuda(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "FakeGPU")
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: None)


def test_cpu_when_no_cuda_logs_why_and_visible_devices(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # e.g. a SLURM job on a node without a driver
    with caplog.at_level(logging.INFO, logger="lffood"):
        assert runtime.select_device("auto") == torch.device("cpu")
    assert "device: cpu (no CUDA device visible; CUDA_VISIBLE_DEVICES=0" in caplog.text
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES"):
        runtime.select_device("cuda")


def test_cpu_requested_never_touches_cuda(monkeypatch, caplog):
    fake_cuda(monkeypatch, 2)
    with caplog.at_level(logging.INFO, logger="lffood"):
        assert runtime.select_device("cpu").type == "cpu"
    assert "config device: cpu" in caplog.text


def test_single_gpu_takes_it_without_a_lock(monkeypatch, caplog, tmp_path):
    fake_cuda(monkeypatch, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # what SLURM sets for a --gpus=1 job
    with caplog.at_level(logging.INFO, logger="lffood"):
        assert runtime.select_device("auto") == torch.device("cuda", 0)
    assert "device: cuda:0 (FakeGPU; CUDA_VISIBLE_DEVICES=3)" in caplog.text
    assert not (tmp_path / "locks").exists()


def test_several_gpus_one_slot_per_process(monkeypatch, caplog):
    fake_cuda(monkeypatch, 3)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    held = []
    for expected in range(3):
        with caplog.at_level(logging.INFO, logger="lffood"):
            assert runtime.select_device("auto") == torch.device("cuda", expected)
        assert f"GPU slot {expected} of 3" in caplog.text
        held.append(runtime._held_slot)  # keep the lock open, as another job would
        runtime._held_slot = None
    # all three taken: share one, say so
    with caplog.at_level(logging.WARNING, logger="lffood"):
        dev = runtime.select_device("auto")
    assert dev.type == "cuda" and "more concurrent GPU jobs than visible GPUs" in caplog.text
    # a job ends: its GPU is free again
    held[1][1].close()
    assert runtime.claim_gpu_slot(3) == (1, True)
    for _, fh in held:
        fh.close()


def test_slot_ids_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-1a2b")
    assert runtime.visible_gpu_ids(2) == ["2", "GPU-1a2b"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert runtime.visible_gpu_ids(2) == ["0", "1"]


def test_slots_are_exclusive_across_processes(tmp_path):
    """Two concurrent job processes on a 2-GPU machine get different GPUs; a third shares."""
    code = textwrap.dedent("""
        import sys, time
        from lffood.runtime import claim_gpu_slot
        print(*claim_gpu_slot(2, sys.argv[1]), flush=True)
        time.sleep(float(sys.argv[2]))
    """)
    locks = str(tmp_path / "locks")
    first = subprocess.Popen([sys.executable, "-c", code, locks, "30"], stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen([sys.executable, "-c", code, locks, "30"], stdout=subprocess.PIPE, text=True)
    try:
        got = {first.stdout.readline().split()[0], second.stdout.readline().split()[0]}
        assert got == {"0", "1"}
        third = subprocess.run([sys.executable, "-c", code, locks, "0"], capture_output=True, text=True, timeout=60)
        assert third.stdout.split()[1] == "False"
    finally:
        first.kill()
        second.kill()
        first.wait()
        second.wait()
    # locks die with their processes
    again = subprocess.run([sys.executable, "-c", code, locks, "0"], capture_output=True, text=True, timeout=60)
    assert again.stdout.split() == ["0", "True"]
