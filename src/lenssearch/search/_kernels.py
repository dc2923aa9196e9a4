"""Numba kernels of the search's hot loops (compiled on first use, cached in ``__pycache__``).

:func:`cut3` cuts the cutouts of a batch from three band images in one pass: it reads each image row once and
writes the band-interleaved output (n x S x S x 3) contiguously, byte-swapping big-endian FITS data on the way,
without the interpreter lock (so that cutting overlaps with the model's prediction). Numpy needs a gather per band
then a strided scatter into every third float, which costs about twice as much.
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
