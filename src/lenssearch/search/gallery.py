"""HTML gallery of candidates: colour stamps sorted by score, for visual inspection.

Each candidate gets a small stamp (4" across, the scale of Angora et al. 2023's figures) and a wider context
stamp (HOLISMOKES XVI, Sect. 4, shows 10" and 80" stamps in the same scaling), both RGB composites of the three
bands (reddest as red) with the asinh scaling of Lupton et al. (2004) via
:func:`astropy.visualization.make_lupton_rgb`. The stretch is set in units of the bands' pixel noise so that every
stamp is scaled the same way.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np


def lupton_rgb(stamp: np.ndarray, noise_sigma: np.ndarray, stretch_sigma: float, q: float) -> np.ndarray:
    """An 8-bit RGB image of a stamp S x S x B (B >= 1 bands, bluest first), Lupton et al. (2004) scaling.

    Each band is divided by its pixel noise, so ``stretch_sigma`` is the linear range in units of the noise.
    With fewer than three bands the missing channels repeat the available ones.
    """
    from astropy.visualization import make_lupton_rgb

    scaled = np.nan_to_num(stamp / np.asarray(noise_sigma)[None, None, :], nan=0.0)
    n = scaled.shape[-1]
    red = scaled[..., n - 1]
    green = scaled[..., n // 2] if n > 1 else red
    blue = scaled[..., 0]
    # FITS rows grow to the North; images are displayed with North up.
    return make_lupton_rgb(red[::-1], green[::-1], blue[::-1], minimum=-1.0, stretch=stretch_sigma, Q=q)


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.image as mpimg

    mpimg.imsave(path, rgb)


def write_gallery(
    out_dir: Path,
    rows: Sequence[dict],
    stamps: Sequence[tuple[np.ndarray, np.ndarray | None]],
    noise_sigma: np.ndarray,
    stretch_sigma: float,
    q: float,
    score_columns: Sequence[str],
    title: str,
    stamp_arcsec: float,
    context_arcsec: float,
) -> Path:
    """Write ``index.html`` and one PNG per stamp into ``out_dir`` (which must not exist yet).

    Parameters
    ----------
    rows
        One mapping per candidate, already sorted by decreasing score, with ``id``, ``ra``, ``dec``, ``score``,
        the ``score_columns`` and optionally ``class``.
    stamps
        (small stamp, context stamp or None) for each row, S x S x B.
    """
    out_dir.mkdir(parents=True)
    lines = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;background:#111;color:#ddd}"
        "div.c{display:inline-block;margin:6px;padding:4px;background:#222;vertical-align:top;font-size:12px}"
        "img{width:200px;height:200px;image-rendering:pixelated;margin-right:2px}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(rows)} candidates sorted by score. Left: {stamp_arcsec:g}&Prime; stamp; right: "
        f"{context_arcsec:g}&Prime; context. Lupton et al. (2004) RGB, North up.</p>",
    ]
    for rank, (row, (small, context)) in enumerate(zip(rows, stamps), start=1):
        stem = f"{rank:05d}"
        save_png(out_dir / f"{stem}_stamp.png", lupton_rgb(small, noise_sigma, stretch_sigma, q))
        imgs = f'<img src="{stem}_stamp.png" alt="stamp">'
        if context is not None:
            save_png(out_dir / f"{stem}_context.png", lupton_rgb(context, noise_sigma, stretch_sigma, q))
            imgs += f'<img src="{stem}_context.png" alt="context">'
        scores = " ".join(f"{html.escape(c)}={float(row[c]):.3f}" for c in score_columns if c in row)
        klass = f" class={html.escape(str(row['class']))}" if row.get("class") else ""
        lines.append(
            f'<div class="c">{imgs}<br>#{rank} <b>{html.escape(str(row["id"]))}</b> '
            f"score={float(row['score']):.3f}{klass}<br>RA={float(row['ra']):.6f} Dec={float(row['dec']):.6f}"
            f"<br>{scores}</div>"
        )
    lines.append("</body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(lines) + "\n")
    return index
