"""Training one model on several GPUs of one node with PyTorch DDP, launched by torchrun.

A benchmark's ``compute.train_gpus`` (default 1) is the train rule's ``gpu`` resource. With more
than one, the rule's script starts ``python -m torch.distributed.run --standalone --nproc_per_node N
-m lffood.ddp <job.json>`` (:mod:`lffood.ddp`): N processes, one per GPU, each running
:func:`lffood.pipeline.run_training` with the same arguments. This module holds what the training
loop needs of the process group (no import of the pipeline). Then:

* every process draws the same seeded order of each global batch and trains on its share
  (positions r, r + N, ...), so the global batch and the number of steps are those of one process;
* DDP averages the network's gradients; the objective's own modules (SSOD's head, ALPA's
  projectors) have theirs averaged with one ``all_reduce``; batch-norm statistics are reduced across
  processes with SyncBatchNorm on CUDA (on the CPU, with the gloo backend used by the tests,
  SyncBatchNorm does not exist and each process normalises with its share's statistics);
* each objective's per-batch loss is a mean over the process's share (an LFF mean over the selected
  locations of that share); the per-epoch statistics (loss, accuracy, LFF's selection and norms, the
  training hooks' sums such as the local-vector monitor's bins, ...) are summed over the processes
  once per epoch, so the log and the collapse guard see the whole batch and every process takes the
  same decisions;
* process 0 logs, writes the end-of-epoch resume state and the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def world() -> tuple[int, int]:
    """``(rank, size)`` of this process; ``(0, 1)`` when not distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(batches: Iterable, rank: int, size: int):
    """This process's share of every batch of indices: positions rank, rank + size, ..."""
    for idx in batches:
        if len(idx) % size:
            raise ValueError(f"a batch of {len(idx)} images cannot be split evenly over {size} processes: choose a "
                             f"batch_size divisible by compute.train_gpus")
        yield idx[rank::size]


def average_gradients(params: Iterable) -> None:
    """Average the gradients of ``params`` over the processes (one all_reduce of them all, flattened)."""
    import torch
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sums(values: Mapping, device) -> dict:
    """Sum every per-epoch statistic (device tensors of any shape and host numbers) over the processes,
    in one all_reduce; returns a float per number or 0-d tensor, a list of floats per larger tensor."""
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    parts = [torch.as_tensor(values[k], dtype=torch.float64, device=device) for k in keys]
    flat = torch.cat([p.reshape(-1) for p in parts])
    dist.all_reduce(flat)
    flat, out, at = flat.tolist(), {}, 0
    for k, p in zip(keys, parts):
        out[k] = flat[at:at + p.numel()] if p.dim() else flat[at]
        at += p.numel()
    return out
