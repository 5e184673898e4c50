"""Device selection: CPU fallback, CUDA_VISIBLE_DEVICES in the log, and one GPU slot per job when
several GPUs are visible (fake device counts; no GPU needed). Host synchronisations: what the sync
counter sees on the CPU, and that a batch makes none (on a GPU also by CUDA's own count)."""

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
    for h in held:
        h[1].close()


def test_several_jobs_per_gpu_share_one_gpu_slot_by_slot(monkeypatch, caplog):
    """LFFOOD_JOBS_PER_GPU=4 with one GPU: four jobs each get their own slot on GPU 0 (and say which);
    a fifth shares and warns; a freed slot is taken again."""
    fake_cuda(monkeypatch, 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(runtime.JOBS_PER_GPU_ENV, "4")
    held = []
    for expected in range(4):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lffood"):
            assert runtime.select_device("auto") == torch.device("cuda", 0)
        assert f"GPU slot {expected} of 4 on GPU 0 of 1" in caplog.text
        held.append(runtime._held_slot)
        runtime._held_slot = None
    with caplog.at_level(logging.WARNING, logger="lffood"):
        assert runtime.select_device("auto") == torch.device("cuda", 0)
    assert "N <= 4" in caplog.text
    held[2][1].close()
    assert runtime.claim_gpu_slot(1, slots=4) == (0, True) and runtime.held_gpu_slot() == 2
    for h in held:
        h[1].close()


def test_slots_fill_every_gpu_before_sharing_one(monkeypatch):
    """Two GPUs, two slots each: the jobs go GPU 0, GPU 1, GPU 0, GPU 1 (slots 0, 0, 1, 1)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    got, held = [], []
    for _ in range(4):
        got.append((runtime.claim_gpu_slot(2, slots=2), runtime.held_gpu_slot()))
        held.append(runtime._held_slot)
        runtime._held_slot = None
    assert got == [((0, True), 0), ((1, True), 0), ((0, True), 1), ((1, True), 1)]
    assert runtime.claim_gpu_slot(2, slots=2)[1] is False
    for h in held:
        h[1].close()


@pytest.mark.parametrize("raw", ["0", "-1", "two"])
def test_jobs_per_gpu_must_be_positive(monkeypatch, raw):
    monkeypatch.setenv(runtime.JOBS_PER_GPU_ENV, raw)
    with pytest.raises(ConfigError, match="LFFOOD_JOBS_PER_GPU"):
        runtime.jobs_per_gpu()


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


# ----------------------------------------------------------------------------- host synchronisations
def test_sync_counter_sees_host_data_copied_to_the_device():
    """A tensor made from host data for a device (what normalize() did with the mean and std lists on
    every batch) is a copy from pageable memory, which on CUDA waits for the GPU: counted on the CPU
    too; a host tensor, or a tensor already on the device, is not."""
    import numpy as np

    from lffood.bench import SyncCounter

    dev = torch.device("cpu")
    x = torch.ones(3)
    own = (torch.tensor, torch.as_tensor, torch.asarray)
    with SyncCounter() as c:
        torch.tensor([0.5, 0.5, 0.5], device=dev)
        torch.as_tensor([0.25] * 3, dtype=torch.float32, device=dev)
        torch.as_tensor(np.ones(3), device=dev)
        torch.tensor([0.5, 0.5, 0.5])  # a host tensor: no copy
        torch.as_tensor(x, device=dev)  # already there
        x.to(dev, copy=True)
        x.clone().copy_(x)
    assert c.calls == {"torch.tensor": 1, "torch.as_tensor": 2}
    assert (torch.tensor, torch.as_tensor, torch.asarray) == own  # restored
    assert "to" not in torch.Tensor.__dict__ and "copy_" not in torch.Tensor.__dict__


def test_sync_counter_copy_rule():
    """Copies between the host and a GPU count unless asynchronous from (or into) pinned memory; copies
    within one device never (the rule SyncCounter applies to Tensor.to and Tensor.copy_ on a GPU)."""
    from lffood.bench import _crosses

    class Host:  # the host-side tensor of a copy
        def __init__(self, pinned):
            self.pinned = pinned

        def is_pinned(self):
            return self.pinned

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert _crosses(cpu, gpu, False, Host(True)) and _crosses(cpu, gpu, True, Host(False))
    assert not _crosses(cpu, gpu, True, Host(True))
    assert _crosses(gpu, cpu, False, None) and not _crosses(gpu, cpu, True, None)  # .to("cpu", non_blocking=True)
    assert not _crosses(cpu, cpu, False, Host(False)) and not _crosses(gpu, gpu, False, None)


AUGMENTS = {"crop": {"crop_padding": 2, "hflip": True, "color_jitter": 0.4, "color_jitter_p": 0.8, "grayscale_p": 0.2},
            "resized crop": {"random_resized_crop": {"size": 8}, "hflip": True}}


def _batches(data, aug, device, steps):
    import itertools

    gen = torch.Generator().manual_seed(0)
    aug_gen = torch.Generator(device=device).manual_seed(1) if device.type == "cuda" else gen
    batches = itertools.islice(data.index_batches(4, shuffle=True, gen=gen), steps)
    for idx, gathered in data.prefetched(batches):
        data.batch(idx, augment=aug, gen=aug_gen, gathered=gathered)


def _split():
    import numpy as np

    from lffood.data.arrays import Split

    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (40, 10, 10, 3), dtype=np.uint8), rng.integers(0, 3, 40), {})


@pytest.mark.parametrize("on_device", [True, False])
@pytest.mark.parametrize("aug", AUGMENTS)
def test_a_batch_makes_no_host_synchronisation(on_device, aug):
    """Gather, augment, normalise and labels, for a split on the device and a host-kept one: nothing per
    step (normalising with the mean and std as lists: 2)."""
    from lffood.bench import syncs_per_step
    from lffood.data.augment import normalize
    from lffood.data.loader import TensorImages

    dev = torch.device("cpu")
    data = TensorImages(_split(), [0.5] * 3, [0.25] * 3, dev, device_max_bytes=None if on_device else 0)
    assert syncs_per_step(lambda k: _batches(data, AUGMENTS[aug], dev, k), 2, 5) == 0
    x = torch.rand(4, 3, 8, 8)
    assert syncs_per_step(lambda k: [normalize(x, [0.5] * 3, [0.25] * 3) for _ in range(k)], 2, 5) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("on_device", [True, False])
def test_cuda_counts_no_synchronisation_in_a_batch(on_device):
    """On a GPU, CUDA's own count (sync debug mode) agrees: a list copied to the device waits, a batch
    (host-kept: pinned, asynchronous copies of images and indices) does not."""
    from lffood.bench import CudaSyncCounter, SyncCounter, syncs_per_step
    from lffood.data.loader import TensorImages

    dev = torch.device("cuda")
    with CudaSyncCounter() as c:
        torch.tensor([0.5, 0.5, 0.5], device=dev)
    assert c.count >= 1
    data = TensorImages(_split(), [0.5] * 3, [0.25] * 3, dev, device_max_bytes=None if on_device else 0)
    for aug in AUGMENTS.values():
        _batches(data, aug, dev, 2)  # warm-up: the pinned-memory cache, kernels
        for counter in (CudaSyncCounter, SyncCounter):
            assert syncs_per_step(lambda k: _batches(data, aug, dev, k), 2, 5, counter=counter) == 0, (aug, counter)
