"""Training on several processes (PyTorch DDP through torchrun, lffood.ddp and lffood.distributed): two processes with
the gloo backend on the CPU against one process."""

import numpy as np
import pandas as pd
import pytest
import torch

from lffood import ddp, distributed, pipeline
from lffood.data.arrays import Split, save_split
from lffood.checkpoint import load_checkpoint


def _spec(objective="lff", params=None):
    stage = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "epochs": 3,
             "batch_size": 16, "schedule": {"type": "constant"},
             "augment": {"crop_padding": 1, "hflip": False, "color_jitter": 0.0}}
    return {"objective": objective, "params": params if params is not None else {"delta": 0.3, "mu": 1.0, "lambda": 0.2},
            "parent": None, "stage_name": "pretrain", "stage": stage, "checkpoint": None,
            "model": {"arch": "resnet", "blocks": [1], "widths": [8]}, "guard": {"enabled": False}, "amp": False,
            "deterministic": True}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    labels = np.arange(96) % 3
    images = rng.integers(0, 60, (96, 8, 8, 3), dtype=np.uint8)
    images[..., 0] += (labels * 60).astype(np.uint8)[:, None, None]  # the class is in the red channel: learnable
    meta = {"role": "id_train", "classes": ["a", "b", "c"], "mean": [0.4] * 3, "std": [0.25] * 3}
    save_split(d / "train.npz", Split(images, labels, meta))
    return d


def test_two_processes_follow_the_loss_curve_of_one(split):
    kwargs = dict(spec=_spec(), variant="lff", seed=0, train_path=str(split / "train.npz"), device_name="cpu")
    one = pipeline.run_training(**kwargs, ckpt_out=str(split / "one.pt"), history_out=str(split / "one.csv"),
                                monitor_out=str(split / "one_monitor.csv"))
    ddp.launch({**kwargs, "ckpt_out": str(split / "two.pt"), "history_out": str(split / "two.csv"),
                "monitor_out": str(split / "two_monitor.csv")}, nproc=2)
    two = pd.read_csv(split / "two.csv")
    assert list(two["epoch"]) == [1, 2, 3]
    # the same global batches and steps: the epochs' losses follow one process's within batch-norm noise
    # (each process normalises with its half batch on the CPU) and both fall
    np.testing.assert_allclose(two["loss"], [h["loss"] for h in one], rtol=0.25)
    assert two["loss"].iloc[-1] < two["loss"].iloc[0]
    # the statistics are summed over both processes: the whole epoch's images and locations
    assert two["frac_selected"].between(0, 1).all() and (two["images_per_s"] > 0).all()
    # the monitor's bins too (vectors summed in the one all_reduce): every location of every image, once
    counts = [pd.read_csv(split / f"{n}_monitor.csv").groupby("epoch")["count"].sum() for n in ("one", "two")]
    assert counts[0].tolist() == counts[1].tolist() == [counts[0].iloc[0]] * 3 and counts[0].iloc[0] % 96 == 0
    model, meta = load_checkpoint(split / "two.pt")  # written once, by process 0
    assert meta["variant"] == "lff" and not (split / "two.resume.pt").exists()


def test_shards_split_every_batch_evenly():
    batches = [torch.arange(8), torch.arange(8, 16)]
    assert [b.tolist() for b in distributed.shard(batches, 1, 2)] == [[1, 3, 5, 7], [9, 11, 13, 15]]
    with pytest.raises(ValueError, match="divisible by compute.train_gpus"):
        list(distributed.shard([torch.arange(5)], 0, 2))
