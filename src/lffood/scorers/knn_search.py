"""Exact k-th nearest neighbour search of the k-NN scorers (KNN, CSD) with torch: the same code on the
CPU (the job's threads) and on CUDA, in chunks so that memory stays bounded.

:func:`kth_largest_similarity` returns, for every query, the k-th largest dot product with the bank
(the scorers pass L2-normalised vectors: the k-th nearest neighbour). Per (query chunk, bank chunk)
pair it computes one float32 product into a reused buffer and keeps the k largest values per query,
merged with the running top k of that query chunk (``torch.topk``); the bank may be stored in float16
(CSD's bank) and is converted to float32 one chunk at a time. Exactness: the k-th similarities are
those of a brute-force float32 product up to float32 rounding of the products (ties are kept: the
selection is by value); TF32 is switched off for the products on CUDA.

* CPU: the loop runs bank chunk by bank chunk (each converted and laid out once), the query chunks
  inside; the products (MKL) and the selection (``topk`` over rows) use ``torch.get_num_threads()``
  threads, which a job sets through :func:`configure` (its ``threads``). Memory: one bank chunk
  in float32, one ``query_chunk x bank_chunk`` float32 buffer and the running top k of every query.
* CUDA: the bank is copied to the GPU once in its stored dtype (float16 for CSD), the loop runs query
  chunk by query chunk (each copied once) with the bank chunks inside, in :data:`CUDA_QUERY_CHUNK` x
  :data:`CUDA_BANK_CHUNK` products (1 GiB); only the k-th similarities come back.
* Without torch (a scoring environment that lacks it), or in a one-thread CPU job (:func:`configure`),
  the numpy search
  (:func:`numpy_kth_largest_similarity`, single-threaded selection) runs.

Timings (``tests/perf/bench_scorers.py --csd-only``): see that script's docstring.

A rule script chooses the device and threads once per process::

    from lffood.scorers import knn_search
    knn_search.configure(device="auto", threads=smk.threads)
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("lffood.scorers.knn_search")

#: Chunk sizes on CUDA: a 16384 x 16384 float32 product is 1 GiB (plus topk's workspace); the bank
#: stays on the GPU in its stored dtype. The scorers' ``chunk_size`` sets the CPU's query chunk only.
CUDA_QUERY_CHUNK, CUDA_BANK_CHUNK = 16384, 16384
#: Bank rows per product on the CPU (32 MiB of float32 products with 1024 query rows).
CPU_BANK_CHUNK = 8192

_device = None  # set by configure(); None: the CPU
_numpy = False  # set by configure(): a one-thread CPU job searches in numpy without importing torch


def _no_nvidia_driver() -> bool:
    """No NVIDIA driver is loaded on this machine (so no CUDA device can be visible)."""
    import os

    return not os.path.exists("/proc/driver/nvidia/version")


def configure(device: str = "cpu", threads: int | None = None):
    """Process-wide choice of the search's device (``auto``: CUDA when one is visible and allowed,
    as :func:`lffood.runtime.select_device` chooses; ``cpu``; ``cuda``; ``cuda:i``) and of the CPU
    threads (``torch.set_num_threads``). Returns the device, or None where torch is missing."""
    global _device, _numpy
    # one CPU thread and no GPU to be had: the numpy search is as fast, and the job saves torch's import
    # (about 3 s, most of a small job's time: the embedded benchmark's CSD and KNN jobs)
    _numpy = (threads or 1) == 1 and (device == "cpu" or (device == "auto" and _no_nvidia_driver()))
    if _numpy:
        _device = None
        log.info("k-NN search in numpy on the CPU (1 thread)")
        return None
    try:
        import torch
    except ImportError:
        log.warning("torch is not installed: the k-NN search runs in numpy on one thread")
        _device = None
        return None
    from ..runtime import select_device, set_threads

    if threads is not None:
        set_threads(threads)
    _device = torch.device("cpu") if device == "cpu" else select_device(device)
    log.info("k-NN search on %s (%d CPU threads)", _device, torch.get_num_threads())
    return _device


def current_device():
    """The device :func:`configure` chose (the CPU if it was not called)."""
    import torch

    return _device if _device is not None else torch.device("cpu")


def kth_largest_similarity(queries: np.ndarray, bank: np.ndarray, k: int, chunk_size: int = 1024,
                           bank_chunk: int | None = None, what: str = "KNN", device=None) -> np.ndarray:
    """The k-th largest dot product of every query (rows of ``queries``, float32) with the rows of
    ``bank`` (float32 or float16), exact and chunked, as float64 (M,). ``chunk_size``: query rows per
    product on the CPU; ``bank_chunk``: bank rows per product (default per device); ``device``: a
    torch device or name (default: :func:`configure`'s)."""
    nq, nb = len(queries), len(bank)
    if not 1 <= k <= nb:
        raise ValueError(f"{what}: k={k} must lie in 1..{nb} (the number of ID training vectors)")
    try:
        if _numpy and device is None:
            raise ImportError("configured for numpy")
        import torch
    except ImportError:
        return numpy_kth_largest_similarity(queries, bank, k, chunk_size=chunk_size,
                                            bank_chunk=bank_chunk or CPU_BANK_CHUNK, what=what)
    dev = torch.device(device) if device is not None else current_device()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    bank = np.ascontiguousarray(bank)
    if bank.dtype not in (np.float16, np.float32):
        bank = bank.astype(np.float32)
    if nq == 0:
        return np.zeros(0)
    if dev.type == "cuda":
        qc, bc = max(chunk_size, CUDA_QUERY_CHUNK), bank_chunk or CUDA_BANK_CHUNK
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.no_grad():
                out = _search(torch.from_numpy(queries), torch.from_numpy(bank).to(dev), k, qc, bc, dev,
                              bank_outer=False)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    else:
        with torch.no_grad():
            out = _search(torch.from_numpy(queries), torch.from_numpy(bank), k, chunk_size,
                          bank_chunk or CPU_BANK_CHUNK, dev, bank_outer=True)
    return out.cpu().numpy().astype(np.float64)


def _search(queries, bank, k: int, qc: int, bc: int, dev, bank_outer: bool):
    """The chunked search on ``dev``: ``queries`` (host float32), ``bank`` (on ``dev`` or the host,
    float32 or float16). ``bank_outer``: each bank chunk is prepared once and every query chunk runs
    against it (the CPU); else each query chunk is copied once and runs against every bank chunk."""
    import torch

    nq, nb = len(queries), len(bank)
    q_starts, b_starts = range(0, nq, qc), range(0, nb, bc)
    order = ([(i, j) for j in b_starts for i in q_starts] if bank_outer
             else [(i, j) for i in q_starts for j in b_starts])
    buffer = torch.empty(min(qc, nq) * min(bc, nb), dtype=torch.float32, device=dev)
    tops: dict[int, torch.Tensor] = {}
    q_at = b_at = None
    q = block = None
    for i, j in order:
        if j != b_at:  # (b, C) float32 on dev; the product uses its transpose without a copy
            block, b_at = bank[j:j + bc].to(dev, dtype=torch.float32, non_blocking=False), j
        if i != q_at:
            q, q_at = queries[i:i + qc].to(dev, non_blocking=False), i
        s = torch.matmul(q, block.T, out=buffer[: len(q) * len(block)].view(len(q), len(block)))
        best = torch.topk(s, min(k, s.shape[1]), dim=1, largest=True, sorted=False).values
        if i in tops:
            best = torch.cat([tops[i], best], dim=1)
            if best.shape[1] > k:
                best = torch.topk(best, k, dim=1, largest=True, sorted=False).values
        tops[i] = best
    return torch.cat([tops[i].min(dim=1).values for i in q_starts])


#: CSD's search for one CIFAR model at the paper's sizes: 50,000 training images x 6 region vectors in
#: the pooled bank; test (10,000) and six OOD sets (10,000 each) x 6 vectors as queries; 512-D, k = 10.
PAPER_CSD = {"bank": 50_000 * 6, "queries": 70_000 * 6, "dim": 512, "k": 10}


def measure(device=None, *, bank: int = PAPER_CSD["bank"], queries: int = PAPER_CSD["queries"],
            dim: int = PAPER_CSD["dim"], k: int = PAPER_CSD["k"], chunk_size: int = 1024, seed: int = 0) -> dict:
    """Wall time of one search on random unit vectors (float16 bank as CSD's; the default sizes are
    :data:`PAPER_CSD`, one CIFAR model's CSD) on ``device`` (default: :func:`configure`'s), synchronised
    on CUDA; the time to make the data is left out. ``seconds``, the sizes, the device and the CPU
    threads. What ``lffood gpu-check`` can call: ``measure("cuda")``."""
    import time

    import torch

    dev = torch.device(device) if device is not None else current_device()
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((bank, dim), dtype=np.float32)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    b = b.astype(np.float16)
    q = rng.standard_normal((queries, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    kth_largest_similarity(q, b, k, chunk_size=chunk_size, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "bank": bank, "queries": queries, "dim": dim, "k": k, "device": str(dev),
            "threads": torch.get_num_threads(), "pairs_per_s": bank * queries / seconds}


def numpy_kth_largest_similarity(queries: np.ndarray, bank: np.ndarray, k: int, chunk_size: int = 1024,
                           bank_chunk: int = 8192, what: str = "KNN") -> np.ndarray:
    """Exact k-th largest dot product of every query with the bank, one block of the bank at a time:
    the numpy search, the reference of the torch search that the scorers use
    (:func:`kth_largest_similarity`) and its fallback where torch is missing.

    Memory: one block of the bank in float32 (a float16 bank, CSD's, is converted block by block),
    one ``chunk_size x bank_chunk`` product buffer and the running top k of every query, never a
    distance matrix. Speed (figures: ``tests/perf/bench_scorers.py``): each block is converted and
    laid out for the product once, not once per query chunk; the products go into one reused buffer
    (a fresh array per product costs its page faults); and each block's top k comes from
    :func:`top_k_rows`, which selects among a few groups of columns instead of the whole row."""
    nq, nb = len(queries), len(bank)
    if not 1 <= k <= nb:
        raise ValueError(f"{what}: k={k} must lie in 1..{nb} (the number of ID training vectors)")
    queries = np.asarray(queries, dtype=np.float32)
    chunks = range(0, nq, chunk_size)
    tops: list[np.ndarray | None] = [None] * len(chunks)
    buffer = np.empty(min(chunk_size, nq) * min(bank_chunk, nb), dtype=np.float32)
    for bs in range(0, nb, bank_chunk):
        block = np.ascontiguousarray(np.asarray(bank[bs:bs + bank_chunk], dtype=np.float32).T)  # (C, b)
        for i, qs in enumerate(chunks):
            q = queries[qs:qs + chunk_size]
            s = np.matmul(q, block, out=buffer[: len(q) * block.shape[1]].reshape(len(q), block.shape[1]))
            block_top = top_k_rows(s, k)
            tops[i] = block_top if tops[i] is None else top_k_rows(np.concatenate([tops[i], block_top], axis=1), k)
    return np.concatenate([top.min(1) for top in tops]).astype(np.float64)


def top_k_rows(s: np.ndarray, k: int, groups_of: int = 32) -> np.ndarray:
    """The ``min(k, b)`` largest values of each row of ``s`` (r, b), in no order (a new array).

    Exact, without a full selection over each row: the columns are split into groups of
    ``groups_of`` (column j belongs to group ``j % (b // groups_of)``, so the group maxima are one
    vectorised reduction); the k largest values lie in the k groups with the largest maxima (every
    value above the k-th largest group maximum is in one of them, and those k groups hold k values
    at least that large), so only those ``k x groups_of`` values per row are selected from."""
    r, b = s.shape
    n_groups = b // groups_of
    if n_groups < 4 * k:  # few groups: the full selection is as cheap
        return np.partition(s, b - k, axis=1)[:, -k:].copy() if b > k else s.copy()
    main = n_groups * groups_of
    maxima = s[:, :main].reshape(r, groups_of, n_groups).max(axis=1)  # (r, n_groups)
    best = np.argpartition(maxima, n_groups - k, axis=1)[:, -k:]  # (r, k) group indices
    cols = (best[:, :, None] + n_groups * np.arange(groups_of)).reshape(r, -1)
    candidates = np.take_along_axis(s, cols, axis=1)
    if main < b:  # the last b % groups_of columns are candidates as they are
        candidates = np.concatenate([candidates, s[:, main:]], axis=1)
    return np.partition(candidates, candidates.shape[1] - k, axis=1)[:, -k:]
