"""Per-cutout validation: inline checks with the KB suite's semantics, and the great-expectations suite itself."""

import numpy as np
import pytest
from .search_helpers import NOISE, PARAMS, gaussian

from lenssearch.config import load_config
from lenssearch.kb.validation import background_level_and_noise
from lenssearch.search.validation import (
    CHECKS,
    ValidationContext,
    cutout_statistics,
    failure_labels,
    run_expectations,
    validate_batch,
)

BANDS = ("F435W", "F606W", "F814W")


@pytest.fixture(scope="module")
def vcfg():
    return load_config(PARAMS).validate


def ctx(vcfg, size=128):
    return ValidationContext.from_config(vcfg, size, BANDS, NOISE)


def batch(n=7, size=128, seed=0):
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, 1.0, (n, size, size, 3)) * np.asarray(NOISE)
    out[..., 2] += gaussian((size, size), size / 2, size / 2, 0.5, 4.0)  # a bright galaxy does not bias the noise
    return out.astype(np.float32)


def test_statistics_agree_with_the_kb_suite(vcfg):
    """Same definitions as the KB suite; the noise uses a subset of the border pairs (ROW_STRIDE), the corner
    medians 143 of 144 pixels, so agreement is statistical."""
    cut = batch(12)
    stats = cutout_statistics(cut, ctx(vcfg))
    ratios = []
    for i in range(len(cut)):
        for b, band in enumerate(BANDS):
            level, sigma = background_level_and_noise(cut[i, ..., b])
            assert stats[f"bg_level_{band}"][i] == pytest.approx(level, abs=0.1 * NOISE[b])
            ratios.append(stats[f"bg_sigma_{band}"][i] / sigma)
    assert np.all(np.abs(np.asarray(ratios) - 1.0) < 0.25)
    assert np.median(ratios) == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(np.median([stats[f"noise_ratio_{b}"] for b in BANDS], axis=1), 1.0, atol=0.05)


def test_each_failure_flags_only_its_cutout(vcfg):
    cut = batch()
    cut[1, 10:20, 10:20, 0] = np.nan  # NaN region
    cut[2, :, :, 1] = 0.0  # a band without data
    cut[3] *= 5.0  # noise five times too high
    cut[4] *= 0.3  # implausibly low noise
    cut[5, ..., 0] += (vcfg.background_max_sigma + 2) * NOISE[0]  # an unsubtracted sky in one band
    stats, failed = validate_batch(cut, ctx(vcfg))
    assert list(failed) == list(CHECKS)
    assert failure_labels(failed) == ["", "finite", "noise", "noise", "noise", "background", ""]


def test_wrong_shape_and_dtype(vcfg):
    _, failed = validate_batch(batch(2, size=64), ctx(vcfg))
    assert failure_labels(failed) == ["shape", "shape"]
    _, failed = validate_batch(batch(2).astype(np.float64), ctx(vcfg))
    assert failure_labels(failed) == ["shape", "shape"]


def test_edge_padding_is_judged_on_the_data(vcfg):
    cut = batch(2)
    cut[0, :, :40, :] = 0.0  # a third of the cutout off the image (zero padding)
    stats, failed = validate_batch(cut, ctx(vcfg))
    assert failure_labels(failed) == ["", ""]
    np.testing.assert_allclose([stats[f"noise_ratio_{b}"][0] for b in BANDS], 1.0, atol=0.1)


def test_great_expectations_flags_the_same_rows(vcfg):
    cut = batch()
    cut[1, 10:20, 10:20, 0] = np.nan
    cut[3] *= 5.0
    cut[5, ..., 0] += (vcfg.background_max_sigma + 2) * NOISE[0]
    c = ctx(vcfg)
    stats, failed = validate_batch(cut, c)
    inline_ok = ~np.any(np.column_stack(list(failed.values())), axis=1)
    passed, failures = run_expectations(stats, c, vcfg)
    assert passed.tolist() == inline_ok.tolist() == [True, False, True, False, True, False, True]
    assert {f["column"] for f in failures} >= {"finite_fraction", "noise_ratio_F435W", "bg_level_sigma_F435W"}


def test_great_expectations_runs_in_a_worker_process_and_falls_back_to_a_thread(vcfg):
    """The suite runs in the search's shared worker process; if that process breaks (e.g. a script without a
    ``__main__`` guard), the chunk is judged in a thread instead, with the same verdicts."""
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from lenssearch.search.pipeline import ValidationTally, _ExpectationChunks

    cut = batch()
    cut[3] *= 5.0
    c = ctx(vcfg)
    stats, failed = validate_batch(cut, c)
    inline_ok = ~np.any(np.column_stack(list(failed.values())), axis=1)
    verdicts = []
    tally = ValidationTally()
    chunks = _ExpectationChunks(c, vcfg, 4, tally, lambda rows, passed, ok: verdicts.append((rows, passed)))
    assert isinstance(chunks.pool, ProcessPoolExecutor)
    chunks.add(np.arange(7), stats, inline_ok)  # 7 >= 4 rows: handed to the worker process
    chunks.finish()
    assert [p.tolist() for _, p in verdicts] == [inline_ok.tolist()] and tally.ge_runs == 1

    broken = _ExpectationChunks(c, vcfg, 100, ValidationTally(), lambda rows, passed, ok: verdicts.append((rows, passed)))
    broken.add(np.arange(7), stats, inline_ok)  # 7 < 100 rows: kept, then handed over to a worker that has died
    future = Future()
    future.set_exception(BrokenProcessPool("the worker died"))
    broken.pending.append((broken.current, future))
    broken.current = None
    broken.finish()
    assert verdicts[-1][1].tolist() == inline_ok.tolist() and broken.tally.ge_disagreements == 0


def test_statistics_go_through_reused_shared_memory_and_are_freed(vcfg):
    """A search's statistics chunks lie in at most MAX_PENDING + 1 shared-memory blocks, reused from chunk to chunk
    (nothing of a chunk's size is allocated per great-expectations run); the verdicts are those of the suite on
    the same rows; finish and abort free every block."""
    from multiprocessing import shared_memory

    from lenssearch.search.pipeline import ValidationTally, _ExpectationChunks

    cut = batch()
    cut[3] *= 5.0
    c = ctx(vcfg)
    stats, failed = validate_batch(cut, c)
    inline_ok = ~np.any(np.column_stack(list(failed.values())), axis=1)
    expected, _ = run_expectations(stats, c, vcfg)

    def blocks(chunks):
        held = [chunks.current, *chunks.free, *(b for b, _ in chunks.pending)]
        return {b.shm.name for b in held if b is not None}

    verdicts = []
    chunks = _ExpectationChunks(c, vcfg, 4, ValidationTally(), lambda rows, passed, ok: verdicts.append((rows.copy(), passed)))
    names = set()
    for i in range(6):  # 7 rows each, >= 4: one great-expectations run per add
        chunks.add(np.arange(7 * i, 7 * i + 7), stats, inline_ok)
        names |= blocks(chunks)
    chunks.finish()
    assert len(names) <= _ExpectationChunks.MAX_PENDING + 1
    assert np.concatenate([r for r, _ in verdicts]).tolist() == list(range(42))
    assert all(p.tolist() == expected.tolist() for _, p in verdicts) and chunks.tally.ge_runs == 6
    aborted = _ExpectationChunks(c, vcfg, 4, ValidationTally(), lambda rows, passed, ok: None)
    for i in range(3):
        aborted.add(np.arange(7 * i, 7 * i + 7), stats, inline_ok)
        names |= blocks(aborted)
    aborted.abort()
    assert not blocks(chunks) and not blocks(aborted)
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)
