"""Fields from LensTool mass models: deflection map, secondary critical lines and a convergence figure.

Input: one entry of ``field.lenstool`` in ``params.yaml`` (a LensTool ``best.par`` and its member catalogue, the
map size and pixel) and the ``field.critical_lines`` settings. Output: the field directory ``<out>/<name>/``
(``docs/architecture.md``), written atomically:

- ``field.json`` (kind ``lenstool``), ``model.par`` (a copy of the parameter file), ``members.ecsv``;
- ``deflection.fits``: ``alpha_x, alpha_y`` (arcsec, ``D_ds / D_s = 1``) on a North-up TAN grid of
  ``map_size_arcsec`` at ``map_pixel_arcsec`` centred on the model's reference
  (:mod:`lenssearch.lensing.deflection_maps`);
- ``critical_lines_zs<z>.ecsv`` + ``_polygons.fits`` per source redshift (:mod:`lenssearch.lensing.critical`);
- a model with potentials at several redshifts (a foreground or background group) is ray-traced plane by plane
  (:class:`~lenssearch.lensing.model.MultiPlaneLensModel`): no single map scales to every source redshift, so the
  field stores one exact map per source redshift of the critical lines, ``deflection_zs<z>.fits`` (the effective
  deflection ``theta - beta`` for that ``z_s``, header ``ZSOURCE``), and its critical lines come from the same
  multi-plane model; ``deflection.fits`` is then the map of the first source redshift divided by the main plane's
  ``D_ds/D_s`` (header ``ZSNORM``), exact at that redshift and an approximation at others, for the stages that
  scale one map; ``field.json`` lists the planes and the per-redshift maps;
- ``convergence.png``: the convergence with the tangential critical lines at each source redshift (as Fig. 1 of
  Angora et al. 2023), derived from the deflection map by finite differences.

The model's own cosmology (the ``cosmologie`` block) is used for distances, because the model was fitted with it;
``field.json`` records it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError

#: Colours of the critical lines per source redshift (Angora et al. 2023, Fig. 1: z = 1.5, 3, 4.5, 6).
LINE_COLOURS = ("cyan", "lime", "orange", "red", "magenta", "white", "yellow")
FIGURE_NAME = "convergence.png"
CATALOGUE_RE = re.compile(r"^critical_lines_zs(\d+(?:\.\d+)?)\.ecsv$")


def deflection_zs_name(z_s: float) -> str:
    """File name of a multi-plane field's deflection map for sources at ``z_s`` (``deflection_zs2.0.fits``)."""
    from lenssearch.lensing.critical import zs_label

    return f"deflection_zs{zs_label(z_s)}.fits"


def members_for_layout(members, z_lens: float):
    """The member table in the field layout: ``member_id``, ``ra``, ``dec``, ``x_arcsec``, ``y_arcsec``, ``z``.

    LensTool catalogues carry one magnitude (``mag``, the band of the scaling relations); it is kept as
    ``mag_lenstool``; band magnitudes are unknown (NaN).
    """
    from astropy.table import Table

    out = Table()
    out["member_id"] = np.array([str(v) for v in members["id"]])
    out["ra"] = np.asarray(members["ra"], dtype=float)
    out["dec"] = np.asarray(members["dec"], dtype=float)
    out["x_arcsec"] = np.asarray(members["x"], dtype=float)
    out["y_arcsec"] = np.asarray(members["y"], dtype=float)
    out["z"] = np.full(len(members), float(z_lens))
    out["mag_lenstool"] = np.asarray(members["mag"], dtype=float) if "mag" in members.colnames else np.nan
    for col in ("ra", "dec"):
        out[col].unit = "deg"
    for col in ("x_arcsec", "y_arcsec"):
        out[col].unit = "arcsec"
    return out


def convergence_figure(dmap, z_sources, path: Path, title: str) -> None:
    """Write a PNG of the convergence (``D_ds / D_s = 1``) with tangential critical lines per source redshift.

    Parameters
    ----------
    dmap
        The :class:`~lenssearch.lensing.deflection_maps.DeflectionMap`; the hessian comes from its finite
        differences (:meth:`~lenssearch.lensing.deflection_maps.DeflectionMap.hessian_maps`).
    z_sources
        Source redshifts of the critical lines.
    path
        Output PNG.
    title
        Figure title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    from lenssearch.lensing.critical import jacobian_quantities

    f_xx, f_xy, f_yy = dmap.hessian_maps()
    kappa = 0.5 * (f_xx + f_yy)
    x, y = dmap.pixel_grid_xy()
    extent = (x[0, 0], x[0, -1], y[0, 0], y[-1, 0])
    x_axis, y_axis = np.linspace(extent[0], extent[1], kappa.shape[1]), np.linspace(extent[2], extent[3],
                                                                                     kappa.shape[0])
    fig = Figure(figsize=(8, 7.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    positive = np.clip(kappa, 1e-3, None)
    image = ax.imshow(positive, origin="lower", extent=extent, cmap="gray_r",
                      norm=LogNorm(vmin=max(1e-2, float(np.percentile(positive, 1))), vmax=float(positive.max())))
    fig.colorbar(image, ax=ax, label=r"$\kappa$ ($D_{ds}/D_s = 1$)", shrink=0.85)
    handles = []
    for k, z_s in enumerate(z_sources):
        lam = jacobian_quantities(f_xx, f_xy, f_yy, dds_over_ds=dmap.dds_over_ds(z_s)).lambda_t
        colour = LINE_COLOURS[k % len(LINE_COLOURS)]
        ax.contour(x_axis, y_axis, lam, levels=[0.0], colors=[colour], linewidths=0.8)
        handles.append((colour, f"$z_s = {z_s:g}$"))
    from matplotlib.lines import Line2D

    ax.legend([Line2D([], [], color=c) for c, _ in handles], [label for _, label in handles], loc="upper right",
              fontsize=8, framealpha=0.6)
    ax.set_xlabel("x [arcsec] (West)")
    ax.set_ylabel("y [arcsec] (North)")
    ax.set_title(title)
    fig.savefig(path, format="png")


def build_lenstool_field(entry, cfg, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Build ``out_dir/<entry.name>/`` from a LensTool model (see the module docstring).

    Parameters
    ----------
    entry
        A :class:`lenssearch.config.LensToolFieldConfig`.
    cfg
        The whole configuration (``field.critical_lines`` is used).
    out_dir
        The fields root (``data/fields``).
    progress
        tqdm progress bars (deflection map rows, members).

    Returns
    -------
    Path
        The field directory.

    Raises
    ------
    LensSearchError
        Bad parameter file or member catalogue (naming the file and line), a model without a sky reference, or a
        map size/pixel that makes no grid.
    """
    from lenssearch.fields import layout
    from lenssearch.io import atomic_path
    from lenssearch.lensing.critical import secondary_critical_lines, write_secondary_catalogue
    from lenssearch.lensing.deflection_maps import compute_deflection_map, tan_wcs, write_deflection_fits
    from lenssearch.lensing.lenstool import read_parfile

    where = f"field.lenstool '{entry.name}'"
    for key in ("parfile", "members"):
        if not Path(getattr(entry, key)).exists():
            raise InputFileError(f"{getattr(entry, key)}: no such file ({where}, key '{key}')")
    if not (entry.map_pixel_arcsec > 0 and entry.map_size_arcsec >= 4 * entry.map_pixel_arcsec):
        raise LensSearchError(
            f"{where}: need map_pixel_arcsec > 0 and map_size_arcsec >= 4 pixels, got "
            f"{entry.map_size_arcsec}, {entry.map_pixel_arcsec}"
        )
    lt = read_parfile(entry.parfile, entry.members)
    if lt.reference_radec is None:
        raise InputFileError(
            f"{entry.parfile}: no 'reference 3 RA Dec' in runmode; the map cannot be placed on the sky"
        )
    if lt.members is None or len(lt.members) == 0:
        raise InputFileError(f"{entry.members}: no members")

    n_pix = int(round(entry.map_size_arcsec / entry.map_pixel_arcsec))
    wcs = tan_wcs(lt.reference_radec, (n_pix, n_pix), entry.map_pixel_arcsec)
    cl = cfg.field.critical_lines
    lines = {}
    per_source_maps = {}
    if lt.multi_plane:
        from lenssearch.lensing.critical import cluster_scale_centres
        from lenssearch.lensing.deflection_maps import DeflectionMap

        centres = cluster_scale_centres(lt.model, lt.members)
        for z_s in cl.source_redshifts:
            view = lt.model.at_source_redshift(float(z_s))
            smap = compute_deflection_map(view, wcs, (n_pix, n_pix), lt.reference_radec, z_lens=lt.z_lens,
                                          cosmology=lt.cosmology, progress=progress)
            smap.z_source = float(z_s)
            per_source_maps[float(z_s)] = smap
            lines[float(z_s)] = secondary_critical_lines(
                view, lt.members, float(z_s), resolution_arcsec=cl.resolution_arcsec,
                search_radius_arcsec=cl.search_radius_arcsec, theta_e_min_arcsec=cl.theta_e_min_arcsec,
                theta_e_max_arcsec=cl.theta_e_max_arcsec, reference_radec=lt.reference_radec,
                cluster_centres=centres, progress=progress,
            )
        z_norm = min(per_source_maps)
        first = per_source_maps[z_norm]
        f = lt.cosmology.dds_over_ds(lt.z_lens, z_norm)
        dmap = DeflectionMap(first.alpha_x / f, first.alpha_y / f, wcs, lt.z_lens, lt.reference_radec, lt.cosmology)
    else:
        dmap = compute_deflection_map(lt, wcs, (n_pix, n_pix), progress=progress)
        for z_s in cl.source_redshifts:
            lines[float(z_s)] = secondary_critical_lines(
                lt, None, float(z_s), resolution_arcsec=cl.resolution_arcsec,
                search_radius_arcsec=cl.search_radius_arcsec, theta_e_min_arcsec=cl.theta_e_min_arcsec,
                theta_e_max_arcsec=cl.theta_e_max_arcsec, progress=progress,
            )
    members = members_for_layout(lt.members, lt.z_lens)
    info = {
        "name": entry.name,
        "kind": "lenstool",
        "z_lens": lt.z_lens,
        "reference_radec": list(lt.reference_radec),
        "cosmology": {"H0": lt.cosmology.H0, "Om0": lt.cosmology.Om0},
        "model_source": str(entry.parfile),
        "members_source": str(entry.members),
        "n_components": len(lt.model),
        "lens_planes": {"z": list(lt.z_planes), "mode": lt.planes,
                        "deflection_maps": {f"{z:g}": deflection_zs_name(z) for z in sorted(per_source_maps)},
                        "deflection_normalised_at_zs": min(per_source_maps) if per_source_maps else None},
        "n_members": len(members),
        "deflection_map": {"size_arcsec": entry.map_size_arcsec, "pixel_arcsec": entry.map_pixel_arcsec,
                           "shape": [n_pix, n_pix]},
        "critical_line_source_redshifts": sorted(lines),
        "critical_lines": {
            "resolution_arcsec": cl.resolution_arcsec, "search_radius_arcsec": cl.search_radius_arcsec,
            "theta_e_min_arcsec": cl.theta_e_min_arcsec, "theta_e_max_arcsec": cl.theta_e_max_arcsec,
        },
    }
    target = Path(out_dir) / entry.name
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        shutil.copyfile(entry.parfile, tmp / layout.MODEL_PAR)
        write_deflection_fits(dmap, tmp / layout.DEFLECTION)
        for z_s, smap in per_source_maps.items():
            write_deflection_fits(smap, tmp / deflection_zs_name(z_s))
        layout.write_table(tmp / layout.MEMBERS, members)
        for z_s, table in lines.items():
            write_secondary_catalogue(table, tmp / layout.critical_lines_name(z_s))
        convergence_figure(dmap, sorted(lines), tmp / FIGURE_NAME,
                           f"{entry.name} (z = {lt.z_lens:g}): tangential critical lines")
        layout.write_json(tmp / layout.FIELD_JSON, info)
    return target


def critical_line_metrics(field_dir: str | Path) -> dict:
    """Per source redshift: number of secondary lines and their median ``theta_E`` (any field kind)."""
    from lenssearch.lensing.critical import catalogue_summary, zs_label

    from astropy.table import Table

    field_dir = Path(field_dir)
    out = {}
    for path in sorted(field_dir.glob("critical_lines_zs*.ecsv")):
        match = CATALOGUE_RE.match(path.name)
        if match is None:
            continue
        summary = catalogue_summary(Table.read(path, format="ascii.ecsv"))
        out[f"zs{zs_label(float(match.group(1)))}"] = {
            "n_lines": summary["n_lines"], "theta_e_median_arcsec": summary["theta_e_median_arcsec"]}
    return out
