"""Launching one training job on several processes with torchrun (PyTorch DDP) and the entry point
of each process: ``python -m torch.distributed.run --standalone --nproc_per_node N -m lffood.ddp
<job.json>``. How the processes share the work: :mod:`lffood.distributed`. Kept apart from it so that
the training loop's helpers do not import the pipeline that imports the training loop.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping

log = logging.getLogger("lffood.ddp")


def launch(kwargs: Mapping, nproc: int) -> None:
    """Run :func:`lffood.pipeline.run_training` with ``kwargs`` in ``nproc`` processes through torchrun
    (one node, rendezvous on localhost); fails when any process fails."""
    with tempfile.TemporaryDirectory(prefix="lffood-ddp-") as tmp:
        job = os.path.join(tmp, "job.json")
        with open(job, "w") as fh:
            json.dump(dict(kwargs), fh)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "lffood.ddp", job]
        log.info("training on %d processes: %s", nproc, " ".join(cmd))
        proc = subprocess.run(cmd)
        if proc.returncode:
            from .errors import LffoodError

            raise LffoodError(f"distributed training on {nproc} processes failed (exit {proc.returncode}); each "
                              "process's error is printed above. With compute.train_gpus: 1 the job trains on one GPU.")


def main(argv=None) -> int:
    """Entry point of each torchrun process: join the process group, pick this process's GPU, train."""
    import torch
    import torch.distributed as dist

    from .jobcontrol import watch_workflow
    from .runtime import setup_logging

    watch_workflow()  # the job's processes end with its Snakemake, as the job does (lffood.jobcontrol)
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as fh:
        kwargs = json.load(fh)
    cuda = torch.cuda.is_available() and kwargs.get("device_name", "auto") != "cpu"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank()
    setup_logging()
    if rank:
        logging.getLogger().setLevel(logging.WARNING)  # process 0 speaks for all
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        kwargs["device_name"] = f"cuda:{local}"
    from . import pipeline

    try:
        pipeline.run_training(**kwargs)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover - started by torchrun
    sys.exit(main())
