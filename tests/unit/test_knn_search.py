"""The torch k-NN search of KNN and CSD (lffood.scorers.knn_search) on the CPU path of the same code
that runs on CUDA: against a brute-force reference and the numpy search, with ties, float16 banks,
ragged chunks and k equal to the bank size."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lffood.scorers import FeatureSet, build_scorer, knn_search  # noqa: E402
from lffood.scorers.knn_search import numpy_kth_largest_similarity as numpy_search  # noqa: E402


def _brute(q, bank, k):
    return np.sort(q.astype(np.float64) @ bank.astype(np.float64).T, axis=1)[:, -k]


@pytest.mark.parametrize("k", [1, 3, 17, 40])  # 40: the whole bank
@pytest.mark.parametrize("chunks", [(1024, 8192), (4, 5), (7, 1), (23, 40), (5, 39)])
def test_matches_brute_force(k, chunks):
    rng = np.random.default_rng(13)
    q, bank = rng.normal(size=(23, 6)).astype(np.float32), rng.normal(size=(40, 6)).astype(np.float32)
    got = knn_search.kth_largest_similarity(q, bank, k, chunk_size=chunks[0], bank_chunk=chunks[1], device="cpu")
    assert got.dtype == np.float64 and got.shape == (23,)
    np.testing.assert_allclose(got, _brute(q, bank, k), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 64, 300])
def test_ties_are_exact(k):
    """Small integers: every product is exact in float32, so the k-th values must be equal, with
    many ties (a constant row, duplicated bank rows) and k up to the bank size."""
    rng = np.random.default_rng(k)
    q = rng.integers(-3, 4, size=(50, 8)).astype(np.float32)
    bank = rng.integers(-3, 4, size=(300, 8)).astype(np.float32)
    bank[100:200] = bank[:100]
    q[0] = 0.0
    for chunks in ((16, 64), (50, 300), (7, 33)):
        got = knn_search.kth_largest_similarity(q, bank, k, chunk_size=chunks[0], bank_chunk=chunks[1])
        np.testing.assert_array_equal(got, _brute(q, bank, k))
        np.testing.assert_array_equal(got, numpy_search(q, bank, k, chunk_size=chunks[0], bank_chunk=chunks[1]))


def test_float16_bank_matches_numpy_search():
    """CSD's float16 bank, blocks large enough for numpy's grouped selection: the same k-th values."""
    rng = np.random.default_rng(15)
    q, bank = rng.normal(size=(130, 16)).astype(np.float32), rng.normal(size=(3000, 16)).astype(np.float16)
    got = knn_search.kth_largest_similarity(q, bank, 10, chunk_size=64, bank_chunk=1300)
    np.testing.assert_allclose(got, _brute(q, bank, 10), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, numpy_search(q, bank, 10, chunk_size=64, bank_chunk=1300), rtol=1e-5, atol=1e-6)


def test_threads_do_not_change_the_result():
    rng = np.random.default_rng(3)
    q, bank = rng.normal(size=(300, 32)).astype(np.float32), rng.normal(size=(2000, 32)).astype(np.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = knn_search.kth_largest_similarity(q, bank, 7, chunk_size=128)
        torch.set_num_threads(2)
        two = knn_search.kth_largest_similarity(q, bank, 7, chunk_size=128)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(one, two, rtol=1e-6)


def test_k_outside_bank_and_empty_queries():
    bank = np.ones((10, 3), np.float32)
    with pytest.raises(ValueError, match="CSD: k=11"):
        knn_search.kth_largest_similarity(np.ones((2, 3), np.float32), bank, 11, what="CSD")
    with pytest.raises(ValueError, match="k=0"):
        knn_search.kth_largest_similarity(np.ones((2, 3), np.float32), bank, 0)
    assert knn_search.kth_largest_similarity(np.ones((0, 3), np.float32), bank, 3).shape == (0,)


def test_configure_cpu_sets_threads_and_device():
    before = torch.get_num_threads()
    try:
        assert knn_search.configure("cpu", threads=2) == torch.device("cpu")
        assert torch.get_num_threads() == 2 and knn_search.current_device() == torch.device("cpu")
    finally:
        torch.set_num_threads(before)


def test_one_thread_cpu_job_searches_in_numpy_with_the_same_result():
    """A one-thread CPU job (the embedded benchmark's) uses the numpy search and never imports torch for
    it; its k-th similarities equal the torch search's up to float32 rounding."""
    rng = np.random.default_rng(3)
    q, b = rng.standard_normal((50, 16)).astype(np.float32), rng.standard_normal((300, 16)).astype(np.float16)
    try:
        assert knn_search.configure("cpu", threads=1) is None
        got = knn_search.kth_largest_similarity(q, b, 7)
    finally:
        knn_search.configure("cpu", threads=torch.get_num_threads())
    np.testing.assert_allclose(got, knn_search.kth_largest_similarity(q, b, 7), rtol=0, atol=1e-5)


@pytest.mark.parametrize("bank_kind", ["pooled", "per_type"])
def test_csd_scores_equal_the_numpy_search(bank_kind):
    """The scorer's results are those of the numpy search it used before, up to float rounding."""
    from lffood.scorers.csd import normalize_rows

    rng = np.random.default_rng(5)
    train = FeatureSet(None, None, extras={"multiscale": rng.normal(size=(200, 6, 12)).astype(np.float16)})
    test = FeatureSet(None, None, extras={"multiscale": rng.normal(size=(30, 6, 12)).astype(np.float16)})
    sc = build_scorer("csd", {"k": 5, "bank": bank_kind, "chunk_size": 16}).fit(train, None)
    bank = normalize_rows(train.extras["multiscale"])
    q = normalize_rows(test.extras["multiscale"].astype(np.float32))
    if bank_kind == "pooled":
        sims = numpy_search(q.reshape(-1, 12), bank.reshape(-1, 12), 5, chunk_size=16).reshape(30, 6)
    else:
        sims = np.stack([numpy_search(q[:, i], bank[:, i], 5, chunk_size=16) for i in range(6)], axis=1)
    expected = -np.min(np.maximum(2.0 - 2.0 * sims, 0.0), axis=1)
    np.testing.assert_allclose(sc.score(test), expected, atol=1e-5)


def test_knn_scores_equal_the_numpy_search():
    from lffood.scorers.feature_based import l2_normalize

    rng = np.random.default_rng(6)
    train, test = FeatureSet(None, rng.normal(size=(500, 20))), FeatureSet(None, rng.normal(size=(40, 20)))
    sc = build_scorer("knn", {"k": 50, "chunk_size": 8}).fit(train, None)
    s = numpy_search(l2_normalize(test.features), l2_normalize(train.features), 50, chunk_size=8)
    np.testing.assert_allclose(sc.score(test), -np.sqrt(np.maximum(2.0 - 2.0 * s, 0.0)), atol=1e-5)


def test_numpy_fallback_without_torch(monkeypatch):
    """A scoring environment without torch runs the numpy search."""
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    rng = np.random.default_rng(8)
    q, bank = rng.normal(size=(9, 4)).astype(np.float32), rng.normal(size=(30, 4)).astype(np.float32)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    got = knn_search.kth_largest_similarity(q, bank, 4, chunk_size=4)
    assert knn_search.configure("auto", threads=2) is None
    monkeypatch.undo()
    np.testing.assert_allclose(got, _brute(q, bank, 4), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(9)
    q, bank = rng.normal(size=(2000, 64)).astype(np.float32), rng.normal(size=(40000, 64)).astype(np.float16)
    cpu = knn_search.kth_largest_similarity(q, bank, 10, device="cpu")
    gpu = knn_search.kth_largest_similarity(q, bank, 10, device="cuda", bank_chunk=7000)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-6)
