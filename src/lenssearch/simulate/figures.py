"""Figures of the source population (stage outputs under ``reports/simulate/``).

- ``source_counts_pz.png``: the F814W number counts used for the magnitudes and the ``p(z | Delta m)`` of each
  magnitude bin (Angora et al. 2023, Fig. 3), with the mocks' drawn values as histograms;
- ``size_redshift.png``: ``R_e(z)`` with the band within which it is drawn and the 0.07" PSF-size threshold
  (Fig. 4 left), with the mocks' sizes.

PNG files are written without time stamps (deterministic bytes for the same inputs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Source size below which a source is unresolved after the PSF (Angora et al. 2023, Fig. 4).
PSF_SIZE_THRESHOLD_ARCSEC = 0.070
PNG_METADATA = {"Software": None}


def _save(fig, path: Path) -> None:
    from lenssearch.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=PNG_METADATA)


def population_figures(cfg, reports_dir: str | Path, mocks=None) -> list[Path]:
    """Write both figures; ``mocks`` (the metadata table) adds the drawn values."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.simulate.sources import SourcePopulation

    reports_dir = Path(reports_dir)
    pop = SourcePopulation.from_config(cfg.simulate.sources)
    cosmo = Cosmology.from_config(cfg.base.cosmology)
    written = []

    # ---- Fig. 3: counts and p(z | Delta m)
    edges = np.asarray(pop.redshifts.mag_edges)
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, len(edges) - 1))
    fig, (ax_n, ax_z) = plt.subplots(1, 2, figsize=(11, 4.2))
    m = np.linspace(pop.mag_min, pop.mag_limit, 300)
    ax_n.semilogy(m, pop.counts.density(m), "k-", label="adopted N(m) (Capak et al. 2007)")
    nodes = np.asarray(pop.counts.mag_nodes)
    ax_n.semilogy(nodes, 10 ** np.asarray(pop.counts.log10_counts), "ko", ms=4)
    for k in range(len(edges) - 1):
        mm = np.linspace(edges[k], edges[k + 1], 30)
        ax_n.fill_between(mm, 1.0, pop.counts.density(mm), color=colours[k], alpha=0.35)
    synth = getattr(getattr(cfg, "field", None), "synthetic", None)
    depths = getattr(synth, "depths", None) if synth is not None else None
    if depths:
        for (name, d), c in zip(sorted(depths.items()), ("c", "g", "m")):
            if "F814W" in d:
                ax_n.axvline(d["F814W"], color=c, ls="--", label=f"{name.upper()} 5σ F814W")
    if mocks is not None and len(mocks):
        ax_h = ax_n.twinx()
        ax_h.hist(np.asarray(mocks["source_mag_F814W"]), bins=np.arange(pop.mag_min, pop.mag_limit + 0.25, 0.25),
                  histtype="step", color="r", label="mocks")
        ax_h.set_ylabel("mocks per 0.25 mag", color="r")
    ax_n.set_xlabel("F814W (AB)")
    ax_n.set_ylabel("N(m) [deg$^{-2}$ mag$^{-1}$]")
    ax_n.set_ylim(10 ** (np.min(pop.counts.log10_counts) - 0.5), 10 ** (np.max(pop.counts.log10_counts) + 0.3))
    ax_n.legend(loc="upper left", fontsize=8)
    z = np.linspace(0.0, pop.redshifts.z_max, 400)
    for k in range(len(edges) - 1):
        label = f"{edges[k]:g}-{edges[k + 1]:g}: median z {pop.redshifts.median(k):.2f}"
        ax_z.plot(z, pop.redshifts.pdf(z, k), color=colours[k], label=label)
    if mocks is not None and len(mocks):
        ax_z.hist(np.asarray(mocks["z_s"]), bins=np.linspace(0, pop.redshifts.z_max, 36), density=True,
                  histtype="step", color="r", label="mocks (z_s >= z_cl + %.1f)" % pop.dz_min)
    ax_z.set_xlabel("z")
    ax_z.set_ylabel("p(z | Δm)")
    ax_z.legend(fontsize=7)
    fig.tight_layout()
    path = reports_dir / "source_counts_pz.png"
    _save(fig, path)
    plt.close(fig)
    written.append(path)

    # ---- Fig. 4 left: R_e(z)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    z = np.linspace(0.01, pop.redshifts.z_max, 400)
    lo, hi = pop.sizes.bounds_kpc(z)
    ax.fill_between(z, lo, hi, color="r", alpha=0.25, label="extraction band [-1.5σ, +1σ]")
    ax.plot(z, pop.sizes.mean_kpc(z), "r-", label="R_e(z): 2.54 kpc, B(1+z)^β (Shibuya+15)")
    kpc = np.array([cosmo.kpc_per_arcsec(float(v)) for v in z])
    ax.plot(z, PSF_SIZE_THRESHOLD_ARCSEC * kpc, "k--", label='0.070" (PSF)')
    if mocks is not None and len(mocks):
        ax.plot(np.asarray(mocks["z_s"]), np.asarray(mocks["source_re_kpc"]), ".", ms=2, color="0.3", label="mocks")
    ax.set_xlabel("z")
    ax.set_ylabel("R_e [kpc]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = reports_dir / "size_redshift.png"
    _save(fig, path)
    plt.close(fig)
    written.append(path)
    return written
