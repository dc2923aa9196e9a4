"""The graders' view of modeled candidates: each stamp with the predicted lens centre and Einstein radius.

HOLISMOKES XVI (Sect. 3.2) showed the graders the modeling network's lens centre and Einstein radius. Each stamp
(the candidate's cutout, Lupton et al. 2004 RGB as in the search's gallery, North up, upscaled 3x) carries a cross
at the predicted centre, a solid circle of radius ``theta_E`` and two dotted circles at ``theta_E +- sigma``
(the 1-sigma band); ``index.html`` lists the stamps with the predicted values and whether the cuts reject them.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

UPSCALE = 3
CIRCLE = (80, 255, 120)
BAND = (255, 220, 80)
CROSS = (0, 230, 255)


def _ring(rgb: np.ndarray, cx: float, cy: float, radius: float, colour, dotted: bool = False) -> None:
    """Draw a one-pixel circle (display pixels) into ``rgb`` in place."""
    if not (np.isfinite(radius) and radius > 0):
        return
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    dist = np.hypot(xx - cx, yy - cy)
    on = np.abs(dist - radius) < 0.6
    if dotted:
        angle = np.arctan2(yy - cy, xx - cx)
        on &= (np.floor(angle * radius / 4.0) % 2) == 0
    rgb[on] = colour


def overlay(rgb: np.ndarray, dx_pix: float, dy_pix: float, theta_pix: float, sigma_pix: float) -> np.ndarray:
    """An upscaled copy of ``rgb`` (North-up display of an n x n cutout) with the predicted centre (offset
    ``dx_pix, dy_pix`` from the cutout centre along its columns and rows) and the ``theta_E +- sigma`` circles."""
    n = rgb.shape[0]
    big = np.repeat(np.repeat(rgb, UPSCALE, axis=0), UPSCALE, axis=1).copy()
    # cutout centre (n - 1) / 2; display rows are flipped (North up)
    cx = ((n - 1) / 2 + dx_pix + 0.5) * UPSCALE - 0.5
    cy = ((n - 1) / 2 - dy_pix + 0.5) * UPSCALE - 0.5
    r, s = theta_pix * UPSCALE, sigma_pix * UPSCALE
    _ring(big, cx, cy, r + s, BAND, dotted=True)
    _ring(big, cx, cy, max(r - s, 0.0), BAND, dotted=True)
    _ring(big, cx, cy, r, CIRCLE)
    i, j = int(round(cy)), int(round(cx))
    for d in range(-6, 7):
        if 0 <= i + d < big.shape[0] and 0 <= j < big.shape[1]:
            big[i + d, j] = CROSS
        if 0 <= i < big.shape[0] and 0 <= j + d < big.shape[1]:
            big[i, j + d] = CROSS
    return big


def write_modeling_gallery(out_dir: Path, table, cutouts: np.ndarray, noise_sigma: np.ndarray, pixel_scale: float,
                           stretch_sigma: float, q: float, title: str) -> Path:
    """Write ``out_dir/index.html`` and one PNG per row of ``table`` (with ``pred_``/``sigma_`` columns)."""
    from lenssearch.search.gallery import lupton_rgb, save_png

    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;background:#111;color:#ddd}"
             "div.c{display:inline-block;margin:6px;padding:4px;background:#222;vertical-align:top;font-size:12px}"
             "img{width:288px;height:288px}</style>", "</head><body>", f"<h1>{html.escape(title)}</h1>",
             "<p>Modeling network (HOLISMOKES IX): cross = predicted lens centre, green circle = predicted "
             "&theta;<sub>E</sub>, dotted = &theta;<sub>E</sub> &plusmn; 1&sigma;. North up, "
             f"{cutouts.shape[1] * pixel_scale:.2f}&Prime; a side.</p>"]
    for k, row in enumerate(table):
        rgb = lupton_rgb(cutouts[k], noise_sigma, stretch_sigma, q)
        img = overlay(rgb, row["pred_lens_x_arcsec"] / pixel_scale, row["pred_lens_y_arcsec"] / pixel_scale,
                      row["pred_theta_e_arcsec"] / pixel_scale, row["sigma_theta_e_arcsec"] / pixel_scale)
        name = f"{k + 1:05d}.png"
        save_png(out_dir / name, img)
        verdict = "rejected by " + str(row["modeling_rejected_by"]) if row["modeling_rejected"] else "kept"
        extra = f" class={html.escape(str(row['class']))}" if "class" in row.colnames else ""
        lines.append(
            f'<div class="c"><img src="{name}" alt="stamp"><br>#{k + 1} <b>{html.escape(str(row["id"]))}</b>'
            f"{extra}<br>&theta;<sub>E</sub> = {row['pred_theta_e_arcsec']:.2f} &plusmn; "
            f"{row['sigma_theta_e_arcsec']:.2f}&Prime;, e = ({row['pred_lens_e1']:.2f}, {row['pred_lens_e2']:.2f}), "
            f"&gamma; = ({row['pred_shear_gamma1']:.2f}, {row['pred_shear_gamma2']:.2f})<br>modeling: "
            f"{html.escape(verdict)}</div>")
    lines.append("</body></html>")
    index = out_dir / "index.html"
    index.write_text("\n".join(lines) + "\n")
    return index
