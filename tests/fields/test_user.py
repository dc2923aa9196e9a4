"""User fields: the same layout from the user's images, deflection map or LensTool file, and members;
bad input gives one clear error and writes nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lenssearch.config import UserFieldConfig
from lenssearch.errors import LensSearchError
from lenssearch.fields.layout import read_field
from lenssearch.fields.user import build_user_field


@pytest.fixture()
def user_inputs(field, tmp_path):
    """The synthetic test field exported as a user would give it: band images, a deflection map, members."""
    d = tmp_path / "inputs"
    d.mkdir()
    images = {}
    for band in field.bands:
        src = field.path / f"image_{band}.fits"
        images[band] = str(d / f"{band}.fits")
        fits.writeto(images[band], fits.getdata(src), fits.getheader(src))
    members = field.members
    t = Table({"ID": members["member_id"], "RA": members["ra"], "Dec": members["dec"], "z": members["z"]})
    for band in field.bands:
        t[f"mag_{band}"] = members[f"mag_{band}"]
    t.write(d / "members.ecsv")
    entry = UserFieldConfig(name="USER1", images=images, members=str(d / "members.ecsv"), z_lens=field.z_lens,
                            deflection=str(field.deflection_path))
    return entry, d


def test_user_field_round_trip(user_inputs, field, cfg, tmp_path):
    entry, _ = user_inputs
    out = build_user_field(entry, cfg, tmp_path / "fields", with_critical_lines=False)
    user = read_field(out)
    assert user.kind == "user" and user.shape == field.shape
    for band in field.bands:
        np.testing.assert_array_equal(user.image(band), field.image(band))
        # the noise measured on the image is the synthetic field's configured one
        assert user.noise_sigma[band] == pytest.approx(field.noise_sigma[band], rel=0.15)
        assert user.zeropoints_ab[band] == field.zeropoints_ab[band]
    np.testing.assert_allclose(user.members["x_arcsec"], field.members["x_arcsec"], atol=1e-6)
    assert list(user.members["member_id"]) == list(field.members["member_id"])


def test_user_field_from_a_lenstool_file(user_inputs, field, cfg, tmp_path):
    entry, _ = user_inputs
    entry = dataclasses.replace(entry, deflection=None, lenstool=str(field.model_path))
    small = dataclasses.replace(cfg, field=dataclasses.replace(
        cfg.field, synthetic=dataclasses.replace(cfg.field.synthetic, deflection_pixel_arcsec=0.3)))
    out = build_user_field(entry, small, tmp_path / "fields", with_critical_lines=False)
    assert (out / "model.par").read_text() == field.model_path.read_text()
    dmap = read_field(out).deflection()
    np.testing.assert_allclose(np.array(dmap.deflection(3.0, -2.0)), np.array(field.deflection().deflection(3.0, -2.0)),
                               atol=0.02)


def _expect_error(entry, cfg, tmp_path, match):
    out = tmp_path / "fields"
    with pytest.raises(LensSearchError, match=match):
        build_user_field(entry, cfg, out, with_critical_lines=False)
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_band(user_inputs, cfg, tmp_path):
    entry, _ = user_inputs
    images = dict(entry.images)
    del images["F606W"]
    _expect_error(dataclasses.replace(entry, images=images), cfg, tmp_path, r"no image for band\(s\) \['F606W'\]")


def test_nan_region(user_inputs, cfg, tmp_path):
    entry, _ = user_inputs
    path = entry.images["F435W"]
    data, header = fits.getdata(path), fits.getheader(path)
    data[100:150, 200:260] = np.nan
    fits.writeto(path, data, header, overwrite=True)
    _expect_error(entry, cfg, tmp_path, r"F435W.fits: band F435W has 3000 NaN/inf pixels.*rows 100-149")


def test_misaligned_wcs(user_inputs, cfg, tmp_path):
    entry, _ = user_inputs
    path = entry.images["F814W"]
    data, header = fits.getdata(path), fits.getheader(path)
    header["CRPIX1"] += 1.5
    fits.writeto(path, data, header, overwrite=True)
    _expect_error(entry, cfg, tmp_path, r"misaligned with band F814W by 1.500 pixels")


def test_deflection_map_not_covering_the_image(user_inputs, field, cfg, tmp_path):
    from lenssearch.lensing.deflection_maps import DeflectionMap, tan_wcs, write_deflection_fits

    entry, d = user_inputs
    dmap = field.deflection()
    small = DeflectionMap(dmap.alpha_x[:100, :100], dmap.alpha_y[:100, :100],
                          tan_wcs(field.reference_radec, (100, 100), 0.1), field.z_lens, field.reference_radec)
    write_deflection_fits(small, d / "small.fits")
    _expect_error(dataclasses.replace(entry, deflection=str(d / "small.fits")), cfg, tmp_path,
                  "does not cover the image")


def test_members_without_radec(user_inputs, cfg, tmp_path):
    entry, d = user_inputs
    t = Table.read(entry.members)
    t.remove_column("RA")
    t.write(d / "bad_members.ecsv")
    _expect_error(dataclasses.replace(entry, members=str(d / "bad_members.ecsv")), cfg, tmp_path,
                  "has no 'ra' column")


def test_exactly_one_mass_model(user_inputs, cfg, tmp_path):
    entry, _ = user_inputs
    _expect_error(dataclasses.replace(entry, deflection=None), cfg, tmp_path, "exactly one of")


# ------------------------------------------------------------------ issue 19: truncated files, band order
def _truncate(path, keep=0.6):
    from pathlib import Path

    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_truncated_image_is_named(user_inputs, cfg, tmp_path):
    entry, _ = user_inputs
    _truncate(entry.images["F606W"])  # was: TypeError: buffer is too small (a traceback)
    _expect_error(entry, cfg, tmp_path, r"F606W\.fits: the FITS image for band F606W is truncated: HDU 0")


def test_truncated_deflection_map_is_named(user_inputs, field, cfg, tmp_path):
    import shutil

    entry, d = user_inputs
    cut = _truncate(shutil.copy(field.deflection_path, d / "deflection.fits"))
    _expect_error(dataclasses.replace(entry, deflection=str(cut)), cfg, tmp_path,
                  r"deflection\.fits: the deflection map is truncated")


def test_truncated_member_catalogue_is_named(user_inputs, cfg, tmp_path):
    entry, _ = user_inputs
    text = open(entry.members).read()
    open(entry.members, "w").write(text[: len(text) - 7])  # cut in the middle of the last row's last number
    _expect_error(entry, cfg, tmp_path, r"members\.ecsv: the member catalogue looks truncated: it ends in the "
                                        r"middle of line \d+")


def test_swapped_band_images_are_refused(user_inputs, cfg, tmp_path):
    entry, _ = user_inputs
    images = dict(entry.images, F435W=entry.images["F814W"], F814W=entry.images["F435W"])
    swapped = dataclasses.replace(entry, images=images)
    _expect_error(swapped, cfg, tmp_path, r"F814W\.fits: given as band F435W, but its header names filter F814W")
    # the override trusts the order given (here the images are on one grid, so the field is built)
    out = build_user_field(dataclasses.replace(swapped, ignore_band_keywords=True), cfg, tmp_path / "f2",
                           with_critical_lines=False)
    assert (out / "field.json").exists()


def test_pivot_wavelength_names_the_band():
    from lenssearch.fields.bands import BandMismatchError, check_band_keywords

    bands = ("F435W", "F606W", "F814W")
    check_band_keywords("a.fits", "F814W", bands, {"FILTER1": "CLEAR1L", "FILTER2": "F814W", "PHOTPLAM": 8045.0})
    check_band_keywords("a.fits", "F435W", bands, {})  # no keywords: accepted as given
    with pytest.raises(BandMismatchError, match=r"a\.fits: given as band F814W, but its header names filter F435W"):
        check_band_keywords("a.fits", "F814W", bands, {"FILTER1": "F435W", "FILTER2": "CLEAR2L"})
    with pytest.raises(BandMismatchError, match=r"PHOTPLAM = 4329 A is that of F435W"):
        check_band_keywords("a.fits", "F814W", bands, {"PHOTPLAM": 4329.0})
