"""LensTool reader: the S1063 CATS model, potfile scaling relations, coordinates, and bad input."""

import math
from pathlib import Path

import numpy as np
import pytest

from lenssearch.errors import LensToolError
from lenssearch.lensing.cosmology import Cosmology
from lenssearch.lensing.lenstool import (
    read_member_catalogue,
    read_multiple_images,
    read_parfile,
    radec_to_xy,
    xy_to_radec,
)
from lenssearch.lensing.profiles.dpie import PIA_C2

DATA = Path(__file__).resolve().parents[2] / "src/lenssearch/data/lenstool/AS1063_cats_gold"
PARFILE = DATA / "best.par"

HEADER = """runmode
\treference     3 342.183220 -44.530889
\timage     0
\tend
"""
COSMO = """cosmologie
\tH0        70.000000
\tomegaM    0.300000
\tomegaX    0.700000
\tend
"""


def _write(tmp_path, body, name="model.par"):
    path = tmp_path / name
    path.write_text(body)
    return path


def test_reads_s1063_cats_model():
    lt = read_parfile(PARFILE, members=DATA / "ref_potential_w_clumpNE.cat")
    profiles = [c.profile for c in lt.model.components]
    assert profiles.count("dpie") == 263 and profiles.count("shear") == 1
    assert lt.reference_radec == (342.183220, -44.530889)
    assert lt.z_lens == pytest.approx(0.3475)
    assert lt.cosmology == Cosmology(70.0, 0.3)
    o1 = next(c for c in lt.model.components if c.name == "O1")
    # radii given in kpc take precedence (LensTool set_lens.c) and agree with the arcsec values of the file
    assert o1.params["core_radius_arcsec"] == pytest.approx(20.132957, rel=1e-5)
    assert o1.params["cut_radius_arcsec"] == pytest.approx(203.384663, rel=1e-5)
    assert o1.params["sigma_kms"] == 1223.737326 and o1.params["emass"] == 0.517298
    assert o1.params["angle_deg"] == -36.014434
    shear = next(c for c in lt.model.components if c.profile == "shear")
    assert shear.params["gamma"] == 0.1039 and shear.params["angle_deg"] == 50.8049
    members = lt.members
    assert len(members) == 260 and set(members.colnames) >= {"id", "x", "y", "ra", "dec", "mag", "component"}
    first = members[members["id"] == "13475"][0]
    assert first["x"] == pytest.approx(79.7384, abs=1e-6) and first["y"] == pytest.approx(33.1776, abs=1e-6)
    assert first["component"] == "13475"
    assert lt.model.members is members


def test_radec_round_trip_and_convention():
    ra0, dec0 = 342.18322, -44.530889
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-200, 200, (2, 50))
    ra, dec = xy_to_radec(x, y, ra0, dec0)
    x2, y2 = radec_to_xy(ra, dec, ra0, dec0)
    np.testing.assert_allclose(x2, x, atol=1e-9)
    np.testing.assert_allclose(y2, y, atol=1e-9)
    # x grows to the West (decreasing RA), y to the North
    xw, _ = radec_to_xy(ra0 - 1.0 / 3600, dec0, ra0, dec0)
    assert xw == pytest.approx(math.cos(math.radians(dec0)))
    # RA wrap-around at 0/360
    xa, _ = radec_to_xy(359.9999, 0.0, 0.0001, 0.0)
    assert xa == pytest.approx(0.72, rel=1e-6)


def test_multiple_images_catalogue():
    lt = read_parfile(PARFILE)
    images = read_multiple_images(DATA / "mul_gold.cat", lt.reference_radec)
    assert len(images) == 50 and len(set(images["family"])) == 19
    row = images[images["id"] == "12.5"][0]
    assert row["family"] == "12" and row["z"] == pytest.approx(6.107)
    x, y = radec_to_xy(342.18409, -44.531624, *lt.reference_radec)
    assert (row["x"], row["y"]) == pytest.approx((x, y))


def test_potfile_scaling_relations(tmp_path):
    (tmp_path / "members.cat").write_text(
        "#REFERENCE 3 342.183220 -44.530889\n"
        "1 10.0 -5.0 1.0 0.6 30.0 18.0 0\n"
        "2 -20.0 12.0 0.8 0.8 -10.0 20.5 0\n"
    )
    par = _write(
        tmp_path,
        HEADER
        + "potentiel O1\n\tprofil 81\n\tx_centre 0.\n\ty_centre 0.\n\tellipticite 0.3\n\tangle_pos 10.\n"
        "\tcore_radius 10.\n\tcut_radius 200.\n\tv_disp 1000.\n\tz_lens 0.3475\n\tend\n"
        "potfile\n\tfilein 3 members.cat\n\ttype 81\n\tzlens 0.3475\n\tmag0 18.5\n\tsigma 0 150.0 0.0\n"
        "\tcutkpc 0 45.0 0.0\n\tcorekpc 0.15\n\tslope 0 4.0 0.0\n\tvdslope 0 4.0 0.0\n\tend\n" + COSMO + "fini\n",
    )
    lt = read_parfile(par)
    assert [c.name for c in lt.model.components] == ["O1", "1", "2"]
    kpc = Cosmology(70.0, 0.3).kpc_per_arcsec(0.3475)
    for comp, mag, (a, b, theta, x, y) in zip(lt.model.components[1:], (18.0, 20.5),
                                              ((1.0, 0.6, 30.0, 10.0, -5.0), (0.8, 0.8, -10.0, -20.0, 12.0))):
        lum = 10 ** (-0.4 * (mag - 18.5))
        p = comp.params
        assert p["sigma_kms"] == pytest.approx(150.0 * lum**0.25)
        assert p["cut_radius_arcsec"] == pytest.approx(45.0 / kpc * lum**0.5)
        assert p["core_radius_arcsec"] == pytest.approx(0.15 / kpc * lum**0.5)
        assert p["emass"] == pytest.approx((a * a - b * b) / (a * a + b * b))
        assert p["angle_deg"] == theta
        assert (p["center_x"], p["center_y"]) == pytest.approx((x, y), abs=1e-9)
    assert list(lt.members["id"]) == ["1", "2"]


def test_sis_profile_and_defaults(tmp_path):
    par = _write(tmp_path, "potentiel A\n\tprofil 1\n\tv_disp 250.\n\tz_lens 0.4\n\tend\nfini\n")
    lt = read_parfile(par)
    (comp,) = lt.model.components
    assert comp.profile == "sis" and comp.params["theta_e_arcsec"] == pytest.approx(4 * PIA_C2 * 250.0**2)
    assert lt.reference_radec is None and lt.cosmology == Cosmology(70.0, 0.3)


def test_member_catalogue_in_absolute_coordinates(tmp_path):
    path = tmp_path / "abs.cat"
    path.write_text("#REFERENCE 0\n7 342.18 -44.53 1.0 0.5 0.0 19.0 0\n")
    table = read_member_catalogue(path, reference=(342.183220, -44.530889))
    x, y = radec_to_xy(342.18, -44.53, 342.183220, -44.530889)
    assert (table["x"][0], table["y"][0]) == pytest.approx((x, y))
    with pytest.raises(LensToolError, match="reference"):
        read_member_catalogue(path)


BAD_PARFILES = {
    "empty": ("", "line 1: empty parameter file"),
    "truncated": (HEADER + "potentiel O1\n\tprofil 81\n\tv_disp 300.\n", "line 5: block 'potentiel O1' is truncated"),
    "missing_end": (
        HEADER + "potentiel O1\n\tprofil 81\n\tv_disp 300.\npotentiel O2\n\tprofil 81\n\tend\nfini\n",
        "line 8: 'potentiel' inside block 'potentiel O1' opened at line 5: missing 'end'",
    ),
    "not_a_number": (
        HEADER + "potentiel O1\n\tprofil 81\n\tv_disp abc\n\tcut_radius 10.\n\tz_lens 0.3\n\tend\nfini\n",
        "line 7: key 'v_disp' expects a number, got 'abc'",
    ),
    "missing_key": (
        HEADER + "potentiel O1\n\tprofil 81\n\tcut_radius 10.\n\tz_lens 0.3\n\tend\nfini\n",
        "line 5: potentiel 'O1': missing required key 'v_disp'",
    ),
    "unknown_profil": (
        HEADER + "potentiel O1\n\tprofil 12\n\tv_disp 300.\n\tz_lens 0.3\n\tend\nfini\n",
        "line 6: unsupported profil 12",
    ),
    "no_model": (HEADER + COSMO + "fini\n", "no 'potentiel' or 'potfile' block"),
    "reference_2": ("runmode\n\treference 2 1 2\n\tend\nfini\n", "line 2: 'reference 2' is not supported"),
    "no_fini": (
        "potentiel A\n\tprofil 1\n\tv_disp 250.\n\tz_lens 0.4\n\tend\n",
        "line 5: the file ends without 'fini' after block 'potentiel A' (line 1): it is truncated or incomplete",
    ),
    "fewer_potentials_than_nlentille": (
        "grille\n\tnlentille 3\n\tend\npotentiel A\n\tprofil 1\n\tv_disp 250.\n\tz_lens 0.4\n\tend\nfini\n",
        "line 2: 'nlentille 3' but the file defines 1 potentials (1 'potentiel' blocks): it is incomplete",
    ),
    "non_flat": (
        "potentiel A\n\tprofil 1\n\tv_disp 250.\n\tz_lens 0.4\n\tend\ncosmologie\n\tomegaM 0.3\n\tomegaX 0.6\n"
        "\tend\nfini\n",
        "only flat cosmologies",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PARFILES))
def test_bad_parfiles(tmp_path, case):
    text, message = BAD_PARFILES[case]
    par = _write(tmp_path, text, name="best.par")
    with pytest.raises(LensToolError) as info:
        read_parfile(par)
    assert str(info.value).startswith(str(par))
    assert message in str(info.value)


def test_bad_multiple_image_catalogues(tmp_path):
    path = tmp_path / "mul.cat"
    path.write_text("# id ra dec a b theta z mag\n1.1 342.19 -44.52 0.1 0.1 0.0 1.2 0.0\n1.2 342.19 -44.52\n")
    with pytest.raises(LensToolError, match=r"mul.cat, line 3: a multiple-image catalogue expects 8 columns"):
        read_multiple_images(path)
    path.write_text("1.1 342.19 -44.52 0.1 0.1 0.0 one 0.0\n")
    with pytest.raises(LensToolError, match=r"mul.cat, line 1: column 'z' expects a number, got 'one'"):
        read_multiple_images(path)
    path.write_text("# nothing\n")
    with pytest.raises(LensToolError, match="no rows found"):
        read_multiple_images(path)
    with pytest.raises(LensToolError, match="no such file"):
        read_multiple_images(tmp_path / "missing.cat")


def test_image_families_as_lenstool_names_them():
    from lenssearch.lensing.lenstool import image_family

    assert [image_family(i) for i in ("6.1", "6.2", "12.10", "1.1a", "6a", "6b", "c2", "A")] == [
        "6", "6", "12", "1", "6", "6", "c2", "A"]
