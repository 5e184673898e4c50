"""Progress lines: every line of a job names its benchmark, seed and model (lffood.runtime.setup_logging's job
mark), and a long training epoch, a long extraction or ODIN scoring of one split say how far they are
(lffood.runtime.Progress), while short ones stay quiet."""

import logging

import numpy as np
import pytest
import torch

from lffood import runtime
from lffood.data.arrays import Split
from lffood.data.loader import TensorImages
from lffood.models import build_model
from lffood.objectives import build_objective
from lffood.runtime import Progress, job_label, setup_logging
from lffood.training import train

torch.set_num_threads(1)

CPU = torch.device("cpu")
SMALL = {"arch": "resnet", "blocks": [1, 1], "widths": [4, 8]}
STAGE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False, "epochs": 1,
         "batch_size": 16, "schedule": {"type": "constant"}, "augment": {"crop_padding": 0, "hflip": False,
                                                                          "color_jitter": 0.0}}


class Clock:
    """A stand-in for time.monotonic that moves only when told."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _data(n=64, k=4, size=8):
    rng = np.random.default_rng(0)
    return TensorImages(Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n) % k),
                        [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])


def _messages(caplog, logger):
    return [r.getMessage() for r in caplog.records if r.name == logger]


# ----------------------------------------------------------------------------- Progress
def test_progress_is_due_once_per_interval_and_never_at_the_end(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(runtime.time, "monotonic", clock)
    p = Progress(10, every=30)
    clock.now += 29.9
    assert not p.due(3)  # within the first interval: a short loop writes nothing
    clock.now += 0.1  # 30 s after the start
    assert p.due(4)
    assert p.text(4) == "4/10 steps (40%), 30s elapsed, about 45s left"  # 30 s for 4 steps: 7.5 s x 6 left
    clock.now += 10
    assert not p.due(5)  # next one 30 s after the last line, not after the start
    clock.now += 20
    assert p.due(6)
    clock.now += 100
    assert not p.due(10)  # the last step: the loop's own closing line follows
    assert p.text(6, "images") == "6/10 images (60%), 2m40s elapsed, about 1m47s left"


def test_progress_interval_is_the_module_setting(monkeypatch):
    monkeypatch.setattr(runtime, "PROGRESS_EVERY_S", 0.0)
    p = Progress(3)
    assert [p.due(i) for i in (1, 2, 3)] == [True, True, False]
    monkeypatch.setattr(runtime, "PROGRESS_EVERY_S", 3600.0)
    p = Progress(3)
    assert [p.due(i) for i in (1, 2, 3)] == [False, False, False]


@pytest.mark.parametrize("seconds, text", [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (7800, "2h10m")])
def test_duration(seconds, text):
    assert runtime.duration(seconds) == text


# ----------------------------------------------------------------------------- the job's mark on every line
def test_job_label_from_wildcards():
    assert job_label({"bench": "embedded", "seed": "0", "variant": "lff"}) == "embedded seed 0 lff"
    assert job_label([("bench", "embedded"), ("seed", "1"), ("variant", "ce"), ("scorer", "odin")]) == \
        "embedded seed 1 ce"
    assert job_label({"bench": "embedded", "table": "table1"}) == "embedded"
    assert job_label({"archive": "svhn"}) == ""


def test_every_line_of_a_job_names_it_once(tmp_path):
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(str(tmp_path / "job.log"), job="embedded seed 0 lff")
        log = logging.getLogger("lffood.test")
        log.info("extracted %s: %d samples", "test", 10)
        log.info("[embedded seed 0 lff] finetune epoch 1/8")  # training's line names the job itself
        setup_logging(str(tmp_path / "plain.log"))
        log.info("no job")
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved[0], saved[1]
    lines = (tmp_path / "job.log").read_text().splitlines()
    assert lines[0].endswith("lffood.test: [embedded seed 0 lff] extracted test: 10 samples")
    assert lines[1].endswith("lffood.test: [embedded seed 0 lff] finetune epoch 1/8")
    assert (tmp_path / "plain.log").read_text().rstrip().endswith("lffood.test: no job")


# ----------------------------------------------------------------------------- the loops
def test_a_long_epoch_reports_its_progress(monkeypatch, caplog):
    torch.manual_seed(0)
    monkeypatch.setattr(runtime, "PROGRESS_EVERY_S", 0.0)  # every step is "long"
    with caplog.at_level(logging.INFO, logger="lffood.training"):
        train(build_model(SMALL, 4), _data(), STAGE, objective=build_objective("ce", {}, feature_dim=8, num_classes=4),
              seed=0, device=CPU, guard={"enabled": False}, job="embedded seed 0 ce", stage_name="pretrain")
    lines = [m for m in _messages(caplog, "lffood.training") if "in this epoch" in m]
    # 64 images at batch 16: 4 steps, a line after each but the last (the epoch's own line follows)
    assert [m.split(": ")[1].split(" (")[0] for m in lines] == ["1/4 steps", "2/4 steps", "3/4 steps"]
    for m in lines:
        assert m.startswith("[embedded seed 0 ce] pretrain epoch 1/1: ")
        loss = float(m.rsplit("loss so far ", 1)[1])
        assert np.isfinite(loss) and loss > 0


def test_a_short_epoch_writes_only_its_epoch_line(caplog):
    torch.manual_seed(0)
    assert runtime.PROGRESS_EVERY_S >= 10  # the default: an embedded epoch takes seconds
    with caplog.at_level(logging.INFO, logger="lffood.training"):
        train(build_model(SMALL, 4), _data(), STAGE, objective=build_objective("ce", {}, feature_dim=8, num_classes=4),
              seed=0, device=CPU, guard={"enabled": False}, job="embedded seed 0 ce", stage_name="pretrain")
    lines = _messages(caplog, "lffood.training")
    assert len(lines) == 1 and lines[0].startswith("[embedded seed 0 ce] pretrain epoch 1/1 lr")


def test_a_long_extraction_and_odin_report_their_progress(monkeypatch, caplog):
    from lffood.extraction import extract_split
    from lffood.scorers import build_scorer

    torch.manual_seed(0)
    monkeypatch.setattr(runtime, "PROGRESS_EVERY_S", 0.0)
    model = build_model(SMALL, 4)
    data = _data(10)
    with caplog.at_level(logging.INFO, logger="lffood"):
        extract_split(model, data, batch_size=4, device=CPU, role="ood")
        build_scorer("odin", {"temperature": 1000.0, "epsilon": 0.0014}).score_network(model, data, batch_size=4,
                                                                                        device=CPU)
    extraction = _messages(caplog, "lffood.extraction")
    assert [m.split(" (")[0] for m in extraction] == ["extracting a split of role ood: 4/10 images",
                                                      "extracting a split of role ood: 8/10 images"]
    odin = _messages(caplog, "lffood.scorers.odin")
    assert [m.split(" (")[0] for m in odin] == ["ODIN: 4/10 images", "ODIN: 8/10 images"]
