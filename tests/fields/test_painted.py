"""Synthetic light painted on a field whose mass comes from a real LensTool model (Abell S1063 members)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lenssearch.errors import InputFileError
from lenssearch.fields.layout import read_field
from lenssearch.fields.painted import add_synthetic_light, elliptical_colour

DATA = "src/lenssearch/data/lenstool/AS1063_cats_gold"


@pytest.fixture()
def lenstool_like_field(tmp_path):
    """A field directory as the LensTool builder leaves it (no images), with the S1063 core members."""
    from lenssearch.fields import layout
    from lenssearch.fields.lenstool import members_for_layout
    from lenssearch.lensing.lenstool import read_member_catalogue

    members = read_member_catalogue(f"{DATA}/ref_potential_w_clumpNE.cat")
    table = members_for_layout(members, 0.3475)
    core = (np.abs(table["x_arcsec"]) < 9) & (np.abs(table["y_arcsec"]) < 9)
    d = tmp_path / "AS1063"
    d.mkdir()
    layout.write_table(d / layout.MEMBERS, table[core])
    ref = members.meta.get("reference_radec", (342.18322, -44.530889))
    (d / layout.FIELD_JSON).write_text(json.dumps({"name": "AS1063", "kind": "lenstool", "z_lens": 0.3475,
                                                   "reference_radec": list(ref)}))
    return d


def test_painted_field_is_a_complete_field(lenstool_like_field, tmp_path):
    from lenssearch.config import load_config

    cfg = load_config("params.yaml")
    add_synthetic_light(lenstool_like_field, cfg, "hff", image_size_arcsec=20.0)
    field = read_field(lenstool_like_field)
    assert field.kind == "lenstool" and field.shape == (667, 667)
    m = field.members
    offset = elliptical_colour("F814W", "F160W", 0.3475)
    assert 0.5 < offset < 1.5  # an elliptical at z = 0.35 is redder in F814W - F160W
    resid = m["mag_F814W"] - m["mag_lenstool"] - offset
    assert np.all(np.abs(resid) < 0.5)
    assert m["mag_F814W"][np.argmax(m["is_bcg"])] == m["mag_F814W"].min()
    # every member is painted where its RA/Dec falls on the image, the brightest with the highest peak
    img = np.asarray(field.image("F814W"), dtype=float)
    col, row = field.wcs.world_to_pixel_values(m["ra"], m["dec"])
    peaks = np.array([img[int(round(r)) - 3:int(round(r)) + 4, int(round(c)) - 3:int(round(c)) + 4].max()
                      for c, r in zip(col, row)])
    assert np.all(peaks > 10 * field.noise_sigma["F814W"])
    assert np.argmax(peaks) == np.argmin(m["mag_F814W"])
    for band in field.bands:
        assert field.psf(band).sum() == pytest.approx(1.0)


def test_painting_needs_member_magnitudes(lenstool_like_field):
    from astropy.table import Table

    from lenssearch.config import load_config

    path = lenstool_like_field / "members.ecsv"
    t = Table.read(path)
    t.remove_column("mag_lenstool")
    t.write(path, overwrite=True)
    with pytest.raises(InputFileError, match="mag_lenstool"):
        add_synthetic_light(lenstool_like_field, load_config("params.yaml"), "hff", image_size_arcsec=20.0)
    assert not (lenstool_like_field / "image_F814W.fits").exists()


def test_mass_only_fields_are_not_listed(lenstool_like_field, field_dir, tmp_path):
    import shutil

    from lenssearch.fields.layout import has_images, list_fields

    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(lenstool_like_field, root / "AS1063")
    shutil.copytree(field_dir, root / "SYN")
    assert not has_images(root / "AS1063") and has_images(root / "SYN")
    assert [f.name for f in list_fields(root)] == ["TEST-A"]
    (root / "SYN" / "image_F606W.fits").unlink()
    with pytest.raises(InputFileError, match="image_F606W.fits"):
        list_fields(root)
