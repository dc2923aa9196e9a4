"""Numba kernels of the search's hot loops (compiled on first use, cached in ``__pycache__``).

:func:`cut3` cuts the cutouts of a batch from three band images in one pass: it reads each image row once and
writes the band-interleaved output (n x S x S x 3) contiguously, byte-swapping big-endian FITS data on the way,
without the interpreter lock (so that cutting overlaps with the model's prediction). Numpy needs a gather per band
then a strided scatter into every third float, which costs about twice as much.

:func:`cutout_statistics` computes the per-cutout validation statistics of
:mod:`lenssearch.search.validation` (finite fraction, per band border noise and background level) in one pass
over a batch, without the interpreter lock and on one core (the model needs the others), with the same values,
bit for bit, as that module's numpy reference: its medians are exact order statistics (a radix select on a small
scratch buffer returns the same k-th smallest value as ``np.partition``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", nogil=True, cache=True)
def _bswap32(v):
    return ((v >> 24) & 0xFF) | ((v >> 8) & 0xFF00) | ((v << 8) & 0xFF0000) | ((v << 24) & 0xFF000000)


@numba.njit(nogil=True, cache=True)
def _cut3(s0, s1, s2, swap, ya, xa, size, dest, out):
    for i in range(ya.size):
        y0 = ya[i]
        x0 = xa[i]
        d = dest[i]
        for r in range(size):
            a0 = s0[y0 + r, x0 : x0 + size]
            a1 = s1[y0 + r, x0 : x0 + size]
            a2 = s2[y0 + r, x0 : x0 + size]
            o = out[d, r]
            if swap:
                for c in range(size):
                    o[3 * c] = _bswap32(a0[c])
                    o[3 * c + 1] = _bswap32(a1[c])
                    o[3 * c + 2] = _bswap32(a2[c])
            else:
                for c in range(size):
                    o[3 * c] = a0[c]
                    o[3 * c + 1] = a1[c]
                    o[3 * c + 2] = a2[c]


def usable(data: list[np.ndarray]) -> bool:
    """Whether :func:`cut3` can cut from these band images: three C-contiguous float32 images, one byte order."""
    return (
        len(data) == 3
        and all(d.ndim == 2 and d.dtype.kind == "f" and d.dtype.itemsize == 4 and d.flags.c_contiguous for d in data)
        and len({d.dtype.isnative for d in data}) == 1
    )


def cut3(
    data: list[np.ndarray], ya: np.ndarray, xa: np.ndarray, size: int, out: np.ndarray, dest: np.ndarray | None = None
) -> None:
    """Fill ``out[dest[k]]`` (float32, N x size x size x 3, C-contiguous; ``dest`` defaults to ``k``) with the
    cutouts whose top-left pixel is ``(ya[k], xa[k])``, wholly inside the images ``data`` (see :func:`usable`)."""
    words = [np.asarray(d).view(np.uint32) for d in data]
    flat = out.view(np.uint32).reshape(len(out), size, size * 3)
    dest = np.arange(len(ya), dtype=np.int64) if dest is None else np.ascontiguousarray(dest, np.int64)
    if len(dest) != len(ya) or (len(dest) and (dest.min() < 0 or dest.max() >= len(out))):
        raise ValueError("cut3: dest must give one row of out per cutout")
    _cut3(words[0], words[1], words[2], not data[0].dtype.isnative, np.ascontiguousarray(ya, np.int64),
          np.ascontiguousarray(xa, np.int64), size, dest, flat)


#: Exponent bits of a float32: all set iff the value is not finite (inf or NaN).
_F32_EXPONENT = np.uint32(0x7F800000)
_F32_SIGN = np.uint32(0x80000000)


@numba.njit(inline="always", nogil=True, cache=True)
def _order_key(bits):
    """A uint32 whose order is that of the (non-NaN) float32 with these bits (-0 just below +0)."""
    return bits ^ np.uint32(0xFFFFFFFF) if bits & _F32_SIGN else bits | _F32_SIGN


@numba.njit(nogil=True, cache=True)
def _kth_key(keys, n, k, hist):
    """The ``k``-th smallest of ``keys[:n]`` (uint32; overwritten): a radix select, one byte at a time from the
    top, keeping the values of the byte bucket that holds the ``k``-th (branch-free, unlike a quickselect)."""
    shift = 24
    while True:
        hist[:] = 0
        for j in range(n):
            hist[(keys[j] >> shift) & 0xFF] += 1
        bucket = 0
        while hist[bucket] <= k:
            k -= hist[bucket]
            bucket += 1
        if hist[bucket] < n:
            m = 0
            for j in range(n):
                v = keys[j]
                keys[m] = v
                m += ((v >> shift) & 0xFF) == bucket
            n = m
        if shift == 0 or n == 1:
            return keys[0]
        shift -= 8


@numba.njit(nogil=True, cache=True)
def _kth(bits, n, k, keys, hist, one):
    """The ``k``-th smallest (the value ``np.partition`` puts at ``k``) of the float32 values whose bits are
    ``bits[:n]`` (no NaN), with scratch ``keys`` and ``hist``; ``one`` is a 1-element uint32 array."""
    for j in range(n):
        keys[j] = _order_key(bits[j])
    key = _kth_key(keys, n, k, hist)
    one[0] = key ^ _F32_SIGN if key & _F32_SIGN else key ^ np.uint32(0xFFFFFFFF)
    return one.view(np.float32)[0]


@numba.njit(nogil=True, cache=True)
def _validation_stats(flat, words, size, n_bands, rows, corners, width, min_pairs, mad_to_sigma, ff, level, sigma):
    n, npix = flat.shape
    npairs = rows.size * (size - 1)
    ncorner, cpix = corners.shape
    d = np.empty(npairs, np.float32)  # good pixel differences of the noise rows, in order
    a = np.empty(npairs, np.float32)  # their absolute deviations from the median
    cvals = np.empty((ncorner, cpix), np.float32)  # usable corner pixels, in order
    d_bits, a_bits, c_bits = d.view(np.uint32), a.view(np.uint32), cvals.view(np.uint32)
    keys = np.empty(max(npairs, cpix), np.uint32)
    hist = np.empty(256, np.int64)
    one = np.empty(1, np.uint32)
    cnt = np.empty(ncorner, np.int64)
    sqrt2 = np.sqrt(2.0)
    for i in range(n):
        x = flat[i]
        w = words[i]
        finite = 0
        for j in range(npix):
            finite += (w[j] & _F32_EXPONENT) != _F32_EXPONENT
        ff[i] = finite / npix
        for b in range(n_bands):
            # noise: horizontal differences on the noise rows; a pair counts if finite and both pixels are != 0;
            # median and MAD over the first odd number of good pairs (all pairs if all count)
            good = 0
            for r in rows:
                base = r * size * n_bands + b
                for c in range(size - 1):
                    p0 = x[base + c * n_bands]
                    p1 = x[base + (c + 1) * n_bands]
                    v = p1 - p0
                    if p0 != 0 and p1 != 0 and np.isfinite(v):
                        d[good] = v
                        good += 1
            if good == npairs or good >= min_pairs:
                m = good - (1 - good % 2)
                med = _kth(d_bits, m, m // 2, keys, hist, one)
                for j in range(m):
                    a[j] = np.abs(d[j] - med)
                mad = _kth(a_bits, m, m // 2, keys, hist, one)
                sigma[b, i] = mad_to_sigma * np.float64(mad) / sqrt2
            else:
                sigma[b, i] = np.nan
            # level: the lowest corner median of the usable (finite, != 0) pixels: over the first odd number of
            # a corner's pixels if all pixels of all corners are usable, else the true median (np.median) of
            # each corner with at least ``width`` usable pixels
            clean = True
            for q in range(ncorner):
                u = 0
                for j in range(cpix):
                    v = x[corners[q, j] * n_bands + b]
                    if v != 0 and np.isfinite(v):
                        cvals[q, u] = v
                        u += 1
                cnt[q] = u
                clean = clean and u == cpix
            lowest = np.float32(np.nan)
            for q in range(ncorner):
                u = cnt[q]
                if clean:
                    m = u - (1 - u % 2)
                    med = _kth(c_bits[q], m, m // 2, keys, hist, one)
                elif u >= width:
                    med = _kth(c_bits[q], u, u // 2, keys, hist, one)
                    if u % 2 == 0:  # numpy: the float32 sum of the two middle values, halved
                        below = _kth(c_bits[q], u, u // 2 - 1, keys, hist, one)
                        med = np.float32(np.float64(below + med) / 2.0)
                else:
                    continue
                if not (med >= lowest):
                    lowest = med
            level[b, i] = lowest


def cutout_statistics(
    cutouts: np.ndarray, rows: np.ndarray, corners: np.ndarray, width: int, min_pairs: int, mad_to_sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite fraction (n), background level and border noise (B x n each) of a C-contiguous float32 batch
    n x S x S x B: ``validation``'s statistics (see :func:`lenssearch.search.validation.cutout_statistics`).

    Parameters
    ----------
    rows
        The noise rows (``validation._noise_rows``).
    corners
        Flat pixel indices of the corners (``validation._corner_pixels``), 4 x width^2.
    width
        Corner side (pixels); when some corner pixels are not usable, a corner counts if ``width`` of its pixels are.
    min_pairs
        Fewest good pixel pairs for a noise estimate when some pairs are not usable.
    mad_to_sigma
        Gaussian sigma per median absolute deviation.
    """
    n, size, _, n_bands = cutouts.shape
    flat = cutouts.reshape(n, size * size * n_bands)
    ff = np.empty(n)
    level = np.empty((n_bands, n))
    sigma = np.empty((n_bands, n))
    _validation_stats(flat, flat.view(np.uint32), size, n_bands, np.ascontiguousarray(rows, np.int64),
                      np.ascontiguousarray(corners, np.int64), int(width), int(min_pairs), float(mad_to_sigma),
                      ff, level, sigma)
    return ff, level, sigma
