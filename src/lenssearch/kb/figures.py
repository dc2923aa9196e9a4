"""Figures of the knowledge base (Angora et al. 2023, Figs. 4 right and 5), written as stage outputs.

- :func:`stamp_gallery`: RGB stamps of mocks (F814W, F606W, F435W as R, G, B; astropy's
  :func:`~astropy.visualization.make_lupton_rgb`, Lupton et al. 2004) sorted by ``theta_E`` along columns and by
  the source's F814W magnitude along rows, labelled with ``z_s``, ``theta_E`` and the magnitude, plus a row of
  non-lenses;
- :func:`theta_e_vs_lens_magnitude`: ``theta_E`` of the mocks against the lens member's F814W magnitude, with
  the relation expected from the members' scaling relation for an isothermal lens
  (``theta_E = 4 pi (sigma/c)^2 D_ds/D_s`` with ``sigma = sigma_ref 10^(-0.4 alpha (m - m_ref))``; Angora et al.
  2023, Sect. 3.1) when reference values are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

C_KMS = 299792.458


def _rgb(cutout: np.ndarray, noise: Sequence[float] | None = None) -> np.ndarray:
    """Lupton RGB of one ``n x n x 3`` cutout (bands F435W, F606W, F814W), scaled by its noise."""
    from astropy.visualization import make_lupton_rgb

    c = np.nan_to_num(np.asarray(cutout, dtype=float))
    if noise is None:
        border = np.concatenate([c[:8].reshape(-1, 3), c[-8:].reshape(-1, 3)])
        noise = 1.4826 * np.median(np.abs(border - np.median(border, axis=0)), axis=0)
    noise = np.maximum(np.asarray(noise, dtype=float), 1e-12)
    scaled = c / noise  # each band in units of its own noise sigma
    return make_lupton_rgb(scaled[..., 2], scaled[..., 1], scaled[..., 0], minimum=-1.0, stretch=20.0, Q=8.0)


def select_gallery(metadata, n_cols: int = 6, n_rows: int = 5) -> list[list[int]]:
    """Indices of mocks for the gallery: ``theta_E`` quantile bins as columns, magnitudes sorted along rows."""
    labels = np.asarray(metadata["label"])
    theta = np.asarray(metadata["theta_e_arcsec"], dtype=float)
    mag = np.asarray(metadata["source_mag_F814W"], dtype=float)
    idx = np.flatnonzero((labels == 1) & np.isfinite(theta) & np.isfinite(mag))
    if idx.size == 0:
        return []
    order = idx[np.argsort(theta[idx], kind="stable")]
    cols = [c for c in np.array_split(order, min(n_cols, order.size)) if c.size]
    grid = []
    for col in cols:
        by_mag = col[np.argsort(mag[col], kind="stable")]
        picks = np.unique(np.linspace(0, by_mag.size - 1, min(n_rows, by_mag.size)).round().astype(int))
        grid.append([int(by_mag[p]) for p in picks])
    return grid


def gallery_negatives(labels, n: int) -> np.ndarray:
    """Indices of ``n`` non-lenses evenly spread over the KB (so that every field appears)."""
    neg = np.flatnonzero(np.asarray(labels) == 0)
    if neg.size == 0:
        return neg
    return neg[np.unique(np.linspace(0, neg.size - 1, min(n, neg.size)).round().astype(int))]


def stamp_gallery(cutouts, metadata, path: str | Path, n_cols: int = 6, n_rows: int = 5,
                  n_negatives: int | None = None) -> Path:
    """Write the RGB stamp gallery (PNG) of mocks sorted by ``theta_E`` (columns) and F814W magnitude (rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = select_gallery(metadata, n_cols, n_rows)
    labels = np.asarray(metadata["label"])
    negatives = gallery_negatives(labels, n_negatives if n_negatives is not None else n_cols)
    n_c = max(len(grid), len(negatives), 1)
    n_r = max((len(c) for c in grid), default=0) + (1 if len(negatives) else 0)
    fig, axes = plt.subplots(max(n_r, 1), n_c, figsize=(1.7 * n_c, 1.8 * max(n_r, 1)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for j, col in enumerate(grid):
        for i, k in enumerate(col):
            ax = axes[i, j]
            ax.imshow(_rgb(cutouts[k]), origin="lower")
            ax.set_title(f"z={metadata['z_s'][k]:.2f} θE={metadata['theta_e_arcsec'][k]:.2f}\"\n"
                         f"F814W={metadata['source_mag_F814W'][k]:.1f}", fontsize=6)
    for j, k in enumerate(negatives):
        ax = axes[-1, j]
        ax.imshow(_rgb(cutouts[k]), origin="lower")
        ax.set_title(f"non-lens {metadata['field'][k]}", fontsize=6, color="firebrick")
    fig.suptitle("Mock GGSLs: θE increases to the right, source F814W magnitude downwards", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def expected_theta_e(mag, m_ref: float, sigma_ref_kms: float, alpha: float, dds_over_ds: float) -> np.ndarray:
    """Isothermal ``theta_E`` (arcsec) of a member of magnitude ``mag`` on the scaling relation.

    ``theta_E = 4 pi (sigma/c)^2 D_ds/D_s`` with ``sigma = sigma_ref 10^(-0.4 alpha (m - m_ref))`` (Angora et al.
    2023, Sect. 3.1). For a LensTool dPIE ``sigma`` is ``sqrt(3/2)`` times the ``v_disp`` parameter.
    """
    sigma = sigma_ref_kms * 10 ** (-0.4 * alpha * (np.asarray(mag, dtype=float) - m_ref))
    return 4.0 * np.pi * (sigma / C_KMS) ** 2 * dds_over_ds * 206264.80624709636


def theta_e_vs_lens_magnitude(metadata, path: str | Path, relations: Sequence[dict] = ()) -> Path:
    """Scatter of ``theta_E`` against the lens F814W magnitude (mocks), with optional expected relations.

    ``relations``: dicts with ``label``, ``m_ref``, ``sigma_ref_kms``, ``alpha``, ``dds_over_ds``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.asarray(metadata["label"])
    sel = labels == 1
    mag = np.asarray(metadata["lens_mag_F814W"], dtype=float)[sel]
    theta = np.asarray(metadata["theta_e_arcsec"], dtype=float)[sel]
    zs = np.asarray(metadata["z_s"], dtype=float)[sel]
    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    sc = ax.scatter(mag, theta, c=zs, s=8, cmap="viridis", alpha=0.8)
    fig.colorbar(sc, ax=ax, label="$z_s$")
    finite = np.isfinite(mag)
    grid = np.linspace(np.nanmin(mag[finite]) - 0.3, np.nanmax(mag[finite]) + 0.3, 100) if finite.any() else None
    for rel in relations:
        if grid is not None:
            ax.plot(grid, expected_theta_e(grid, rel["m_ref"], rel["sigma_ref_kms"], rel["alpha"],
                                           rel["dds_over_ds"]), lw=1.5, label=rel["label"])
    ax.set_yscale("log")
    ax.set_xlabel("lens magnitude F814W")
    ax.set_ylabel(r"$\theta_E$ [arcsec]")
    ax.set_title("Mock GGSLs: Einstein radius vs lens magnitude")
    if relations:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def scaling_relations_from_fields(fields_dir: str | Path | None, cosmology, z_s: float = 2.0) -> list[dict]:
    """Expected ``theta_E``-magnitude relations of synthetic fields (m*, sigma* from field.json / members.ecsv)."""
    if fields_dir is None:
        return []
    from lenssearch.fields.layout import list_fields

    out = []
    for f in list_fields(fields_dir):
        if f.kind != "synthetic":
            continue
        m_star = f.info.get("m_star_F814W")
        sigma_star = f.info.get("sigma_star_kms")
        if m_star is None or sigma_star is None:
            continue
        out.append({"label": f"{f.name} scaling relation, $z_s$={z_s}", "m_ref": float(m_star),
                    # LensTool v_disp -> isothermal sigma: b0 = 6 pi v^2/c^2 = 4 pi sigma^2/c^2
                    "sigma_ref_kms": float(sigma_star) * np.sqrt(1.5), "alpha": 0.25,
                    "dds_over_ds": cosmology.dds_over_ds(f.z_lens, z_s)})
    return out
