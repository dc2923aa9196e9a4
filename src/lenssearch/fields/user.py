"""User-supplied fields (kind ``user``): the user's images, mass model and members in the field layout.

An entry of ``field.user`` (:class:`lenssearch.config.UserFieldConfig`) names one FITS image per band (same pixel
grid, celestial WCS, e-/s), either a deflection map (FITS, :func:`lenssearch.lensing.deflection_maps.
read_deflection_fits`) or a LensTool parameter file, and a member catalogue (ECSV, CSV or FITS table) with ``ra``,
``dec`` (degrees), ``z`` and ``mag_<band>``. Everything is checked before anything is written; bad input raises
one :class:`~lenssearch.errors.LensSearchError` naming the file, the band or the column:

- a band of ``base.bands`` without an image, an unreadable or truncated image, an image without a celestial WCS,
  an image whose ``FILTER``/``FILTER1``/``FILTER2``/``PHOTPLAM`` keywords name another band
  (:mod:`lenssearch.fields.bands`; the entry's ``ignore_band_keywords: true`` skips this check);
- NaN (or infinite) pixels in an image;
- bands whose WCS or shapes differ (misaligned by more than 0.01 pixel anywhere on the frame);
- a deflection map that does not cover the image footprint;
- a member catalogue without RA/Dec (or z, or magnitudes), or with members outside the image.

The field is then written with the same code path as the synthetic fields (:mod:`lenssearch.fields.layout`),
atomically: the noise sigma per band is measured on the image (:func:`~lenssearch.fields.photometry.
robust_pixel_noise`), the AB zero point comes from
the header (``ZP_AB``/``PHOTZPT``, or HST's ``PHOTFLAM``/``PHOTPLAM``) or the ACS default, and the PSFs from the
given files or the package's ACS PSFs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenssearch.errors import InputFileError, LensSearchError
from lenssearch.fields import layout
from lenssearch.fields.photometry import depth_from_pixel_sigma, robust_pixel_noise, zeropoint

#: Largest WCS disagreement (pixels) tolerated between bands.
WCS_TOLERANCE_PIXELS = 0.01


def _read_image(path: Path, band: str, bands=(), check_bands: bool = True):
    from astropy.wcs import WCS, FITSFixedWarning
    import warnings

    from lenssearch.fields.bands import check_band_keywords
    from lenssearch.io import open_fits

    if not path.exists():
        raise InputFileError(f"{path}: image for band {band} not found")
    with open_fits(path, f"FITS image for band {band}") as hdul:  # a truncated file is refused, named
        hdu = next((h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2), None)
        if hdu is None:
            raise InputFileError(f"{path}: no 2-D image HDU for band {band}")
        if check_bands:
            check_band_keywords(path, band, tuple(bands) or (band,), hdu.header, hdul[0].header)
        data = np.asarray(hdu.data, dtype=np.float64)
        header = hdu.header.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    if not wcs.has_celestial or wcs.naxis != 2:
        raise InputFileError(f"{path}: band {band} has no celestial WCS")
    bad = ~np.isfinite(data)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise InputFileError(
            f"{path}: band {band} has {int(bad.sum())} NaN/inf pixels ({100 * bad.mean():.2f}% of the image, rows "
            f"{rows.min()}-{rows.max()}, columns {cols.min()}-{cols.max()}); fill or crop them first"
        )
    return data, header, wcs


def _header_zeropoint(header, band: str) -> float:
    for key in ("ZP_AB", "PHOTZPT"):
        if key in header:
            return float(header[key])
    if "PHOTFLAM" in header and "PHOTPLAM" in header:
        return float(-2.5 * np.log10(header["PHOTFLAM"]) - 5.0 * np.log10(header["PHOTPLAM"]) - 2.408)
    return zeropoint(band)


def _check_alignment(images: dict, paths: dict) -> None:
    bands = list(images)
    ref_band = bands[-1]
    ref_data, _, ref_wcs = images[ref_band]
    ny, nx = ref_data.shape
    cols = np.array([0, nx - 1, 0, nx - 1, (nx - 1) / 2])
    rows = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    ra, dec = ref_wcs.pixel_to_world_values(cols, rows)
    for band in bands[:-1]:
        data, _, wcs = images[band]
        if data.shape != ref_data.shape:
            raise InputFileError(
                f"{paths[band]}: band {band} has shape {data.shape}, band {ref_band} ({paths[ref_band]}) has "
                f"{ref_data.shape}; all bands must share one pixel grid"
            )
        c, r = wcs.world_to_pixel_values(ra, dec)
        offset = float(np.max(np.hypot(c - cols, r - rows)))
        if not offset <= WCS_TOLERANCE_PIXELS:
            raise InputFileError(
                f"{paths[band]}: WCS of band {band} is misaligned with band {ref_band} by {offset:.3f} pixels "
                f"(tolerance {WCS_TOLERANCE_PIXELS}); resample the bands onto one grid"
            )


def _read_members(path: Path, bands):
    from astropy.table import Table

    if not path.exists():
        raise InputFileError(f"{path}: member catalogue not found")
    from lenssearch.io import check_text_complete

    fmt = {".ecsv": "ascii.ecsv", ".csv": "ascii.csv", ".fits": "fits", ".fit": "fits"}.get(path.suffix.lower())
    if fmt is None or fmt.startswith("ascii"):
        check_text_complete(path, "member catalogue")  # a file cut mid-row would give a wrong last member
    try:
        if fmt is not None and fmt.startswith("ascii"):
            table = Table.read(path, format=fmt, guess=False)
        else:
            table = Table.read(path, format=fmt) if fmt else Table.read(path)
    except Exception as exc:  # astropy raises many types for unreadable tables
        raise InputFileError(f"{path}: not a readable table ({exc})") from None
    lower = {c.lower(): c for c in table.colnames}
    for want in ("ra", "dec", "z"):
        if want not in lower:
            raise InputFileError(f"{path}: member catalogue has no '{want}' column (have {table.colnames})")
        if lower[want] != want:
            table.rename_column(lower[want], want)
    missing = [f"mag_{b}" for b in bands if f"mag_{b}" not in table.colnames]
    if missing:
        raise InputFileError(f"{path}: member catalogue lacks magnitude column(s) {missing}")
    for col in ("ra", "dec", "z", *[f"mag_{b}" for b in bands]):
        values = np.asarray(table[col], dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InputFileError(f"{path}: row {int(bad[0]) + 1}: column '{col}' is not a finite number")
    if "member_id" not in table.colnames:
        ids = table[lower["id"]] if "id" in lower else np.arange(len(table))
        table["member_id"] = np.array([str(v) for v in ids])
    table["member_id"] = np.array([str(v) for v in table["member_id"]])
    if len(set(table["member_id"])) != len(table):
        raise InputFileError(f"{path}: member ids are not unique")
    return table


def _check_coverage(dmap, wcs, shape, source: str, image_path: Path) -> None:
    ny, nx = shape
    cols = np.array([0, nx - 1, 0, nx - 1, 0, (nx - 1) / 2, nx - 1, (nx - 1) / 2])
    rows = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2, 0, (ny - 1) / 2, ny - 1])
    ra, dec = wcs.pixel_to_world_values(cols, rows)
    mc, mr = dmap.wcs.world_to_pixel_values(ra, dec)
    my, mx = dmap.shape
    inside = (mc >= -0.5) & (mc <= mx - 0.5) & (mr >= -0.5) & (mr <= my - 0.5)
    if not inside.all():
        raise InputFileError(
            f"{source}: the deflection map does not cover the image {image_path} (image corners/edges fall outside "
            f"the map's {mx} x {my} pixels); provide a map covering the whole field"
        )


def build_user_field(entry, cfg, out_dir: str | Path, *, with_critical_lines: bool = True) -> Path:
    """Check a user field and write it as ``out_dir/<name>/`` (atomically; nothing is written on bad input)."""
    from lenssearch.fields.psf import band_psfs
    from lenssearch.fields.synthetic import critical_line_catalogues
    from lenssearch.io import atomic_path
    from lenssearch.lensing.cosmology import Cosmology
    from lenssearch.lensing.critical import write_secondary_catalogue
    from lenssearch.lensing.deflection_maps import (
        compute_deflection_map,
        read_deflection_fits,
        write_deflection_fits,
    )
    from lenssearch.lensing.lenstool import radec_to_xy, read_parfile

    bands = tuple(cfg.base.bands)
    where = f"field.user '{entry.name}'"
    missing = [b for b in bands if b not in entry.images]
    if missing:
        raise LensSearchError(f"{where}: no image for band(s) {missing} (images: {sorted(entry.images)})")
    if (entry.deflection is None) == (entry.lenstool is None):
        raise LensSearchError(f"{where}: give exactly one of 'deflection' (FITS) or 'lenstool' (parameter file)")
    paths = {b: Path(entry.images[b]) for b in bands}
    check_bands = not getattr(entry, "ignore_band_keywords", False)
    images = {b: _read_image(paths[b], b, bands, check_bands) for b in bands}
    _check_alignment(images, paths)
    ref_data, _, wcs = images[bands[-1]]
    shape = ref_data.shape
    scales = np.sqrt(np.abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600.0
    members = _read_members(Path(entry.members), bands)
    mc, mr = wcs.world_to_pixel_values(np.asarray(members["ra"], float), np.asarray(members["dec"], float))
    outside = np.flatnonzero((mc < 0) | (mc > shape[1] - 1) | (mr < 0) | (mr > shape[0] - 1))
    if outside.size:
        raise InputFileError(f"{entry.members}: row {int(outside[0]) + 1} (member "
                             f"{members['member_id'][outside[0]]}) lies outside the image {paths[bands[-1]]}")

    cosmology = Cosmology.from_config(cfg.base.cosmology)
    if entry.deflection is not None:
        dmap = read_deflection_fits(entry.deflection, z_lens=entry.z_lens, cosmology=cosmology)
        _check_coverage(dmap, wcs, shape, str(entry.deflection), paths[bands[-1]])
        model = dmap
        reference = dmap.reference_radec
        model_source = str(entry.deflection)
    else:
        lt = read_parfile(entry.lenstool)
        if lt.reference_radec is None:
            raise InputFileError(f"{entry.lenstool}: no 'reference 3 RA Dec' in runmode; sky positions undefined")
        model = lt.model
        reference = lt.reference_radec
        model_source = str(entry.lenstool)
        step = cfg.field.synthetic.deflection_pixel_arcsec
        from lenssearch.lensing.deflection_maps import tan_wcs

        c_ra, c_dec = wcs.pixel_to_world_values((shape[1] - 1) / 2, (shape[0] - 1) / 2)
        size = max(shape) * float(scales) + 4.0
        n_map = int(np.ceil(size / step))
        map_wcs = tan_wcs((float(c_ra), float(c_dec)), (n_map, n_map), step)
        dmap = compute_deflection_map(lt, map_wcs, (n_map, n_map), reference, z_lens=lt.z_lens, cosmology=cosmology)
    x, y = radec_to_xy(members["ra"], members["dec"], *reference)
    members["x_arcsec"] = x
    members["y_arcsec"] = y

    psfs = {}
    if entry.psfs:
        from lenssearch.io import open_fits

        for band, p in entry.psfs.items():
            with open_fits(p, f"PSF image for band {band}") as hdul:
                hdu = next((h for h in hdul if h.data is not None), hdul[0])
                data = np.asarray(hdu.data, dtype=float)
            if data.ndim != 2 or not np.all(np.isfinite(data)) or not data.sum() > 0:
                raise InputFileError(f"{p}: PSF for band {band} must be a finite 2-D image with positive sum")
            psfs[band] = data / data.sum()
    synth = cfg.field.synthetic
    defaults = band_psfs([b for b in bands if b not in psfs], float(scales), synth.psf_size_pixels,
                         synth.psf_fwhm_arcsec)
    psfs.update(defaults)

    zps, sigma, depths = {}, {}, {}
    for band in bands:
        data, header, _ = images[band]
        zps[band] = _header_zeropoint(header, band)
        std = robust_pixel_noise(data)
        sigma[band] = std
        depths[band] = depth_from_pixel_sigma(sigma[band], zps[band], psfs[band]) if std > 0 else float("nan")

    lines = critical_line_catalogues(model, members, cfg, reference) if with_critical_lines else {}
    info = {
        "name": entry.name, "kind": "user", "z_lens": float(entry.z_lens), "reference_radec": list(reference),
        "bands": list(bands), "pixel_scale_arcsec": float(scales), "shape": list(shape), "zeropoints_ab": zps,
        "noise_sigma": sigma, "depth_5sigma_ab": depths, "model_source": model_source,
        "images": {b: str(paths[b]) for b in bands}, "n_members": len(members),
        "critical_line_source_redshifts": sorted(lines),
    }
    target = Path(out_dir) / entry.name
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        if entry.lenstool is not None:
            (tmp / layout.MODEL_PAR).write_text(Path(entry.lenstool).read_text())
        for band in bands:
            layout.write_image(tmp / layout.image_name(band), images[band][0], wcs, band, zps[band],
                               {"NOISESIG": (sigma[band], "[e-/s] measured background sigma per pixel")})
            layout.write_psf(tmp / layout.psf_name(band), psfs[band], band, float(scales),
                             "user" if entry.psfs and band in entry.psfs else "lenssearch ACS PSF")
        write_deflection_fits(dmap, tmp / layout.DEFLECTION)
        layout.write_table(tmp / layout.MEMBERS, members)
        for z_s, table in lines.items():
            write_secondary_catalogue(table, tmp / layout.critical_lines_name(z_s))
        layout.write_json(tmp / layout.FIELD_JSON, info)
    return target
