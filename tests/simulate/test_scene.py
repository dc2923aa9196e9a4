"""Reading a field for cutting: the contract checks of docs/architecture.md."""

import numpy as np
import pytest
from astropy.io import fits

from lenssearch.errors import LensSearchError
from lenssearch.fields.layout import list_fields
from lenssearch.simulate.scene import FieldScene

from .conftest import build_field

BANDS = ("F435W", "F606W", "F814W")


def test_member_pixels_and_cutout_centre(test_fields):
    scene = FieldScene(list_fields(test_fields)[0], BANDS, with_lens=False)
    row = scene.members[0]  # at the model reference (0, 0): the image centre
    assert row["pix_col"] == pytest.approx(199.5, abs=1e-6) and row["pix_row"] == pytest.approx(199.5, abs=1e-6)
    r0, c0 = scene.window(row["pix_col"], row["pix_row"], 128)
    (x, y), _ = scene.window_centre(r0, c0, 128)
    assert abs(x - row["x_model"]) <= 0.015 + 1e-9 and abs(y - row["y_model"]) <= 0.015 + 1e-9
    cut = scene.cutout(r0, c0, 128)
    assert cut.shape == (128, 128, 3) and cut.dtype == np.float32


def test_misaligned_band_is_an_error(tmp_path):
    path = build_field(tmp_path / "fields")
    with fits.open(path / "image_F606W.fits", mode="update") as hdul:
        hdul[0].header["CRPIX1"] += 3.0
    with pytest.raises(LensSearchError, match="image_F606W.fits: WCS or shape differs"):
        FieldScene(list_fields(tmp_path / "fields")[0], BANDS, with_lens=False)


def test_missing_band_is_an_error(test_fields):
    with pytest.raises(LensSearchError, match=r"lacks band\(s\) \['F125W'\]"):
        FieldScene(list_fields(test_fields)[0], ("F435W", "F125W"), with_lens=False)


def test_rotated_image_is_an_error(tmp_path):
    path = build_field(tmp_path / "fields")
    for band in BANDS:
        with fits.open(path / f"image_{band}.fits", mode="update") as hdul:
            h = hdul[0].header
            scale = abs(h["CDELT1"])
            h["PC1_1"], h["PC1_2"], h["PC2_1"], h["PC2_2"] = 0.8, -0.6, 0.6, 0.8
            assert scale > 0
    with pytest.raises(LensSearchError, match="not North-up"):
        FieldScene(list_fields(tmp_path / "fields")[0], BANDS, with_lens=False)
