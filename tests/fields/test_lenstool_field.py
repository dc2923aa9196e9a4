"""The ``field`` stage for LensTool models (lenssearch.fields.lenstool) and the ``field`` CLI verb."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from numpy.testing import assert_allclose
from typer.testing import CliRunner

from lenssearch.cli import app
from lenssearch.io import MANIFEST

REF = (342.1832200, -44.5308890)

PARFILE = """runmode
	reference     3 342.183220 -44.530889
	end
potentiel O1
	profil       81
	x_centre     0.0
	y_centre     0.0
	ellipticite     0.3
	angle_pos       20.0
	core_radius         3.0
	cut_radius         300.0
	v_disp     550.0
	z_lens     0.35
	end
potentiel O2
	profil       14
	gamma     0.05
	angle_pos     40.0
	z_lens     0.35
	end
potentiel 101
	profil       81
	x_centre     3.0
	y_centre     16.0
	ellipticite     0.1
	angle_pos       10.0
	core_radius         0.05
	cut_radius         15.0
	v_disp     200.0
	z_lens     0.35
	end
potentiel 102
	profil       81
	x_centre     -12.0
	y_centre     -11.0
	ellipticite     0.0
	angle_pos       0.0
	core_radius         0.03
	cut_radius         10.0
	v_disp     120.0
	z_lens     0.35
	end
cosmologie
	model       1
	H0        70.000000
	omegaM    0.300000
	omegaX    0.700000
	end
fini
"""

MEMBERS = """#REFERENCE 3 342.1832200 -44.5308890
101 3.0 16.0 1.0 0.9 10.0 19.0 0.0
102 -12.0 -11.0 1.0 1.0 0.0 20.5 0.0
"""


def write_params(tmp_path: Path, lenstool=None, user=None, source_redshifts=(2.0, 3.0)) -> Path:
    data = yaml.safe_load(Path("params.yaml").read_text())
    data["field"]["critical_lines"]["source_redshifts"] = list(source_redshifts)
    data["field"]["lenstool"] = lenstool or []
    data["field"]["synthetic"]["fields"] = []
    data["field"]["user"] = user or []
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def small_cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lenstool")
    (folder / "best.par").write_text(PARFILE)
    (folder / "members.cat").write_text(MEMBERS)
    entry = {"name": "SMALL", "parfile": str(folder / "best.par"), "members": str(folder / "members.cat"),
             "map_size_arcsec": 40.0, "map_pixel_arcsec": 0.2}
    return folder, entry


@pytest.fixture(scope="module")
def built(small_cluster, tmp_path_factory):
    folder, entry = small_cluster
    work = tmp_path_factory.mktemp("run")
    params = write_params(work, lenstool=[entry])
    result = CliRunner().invoke(
        app, ["field", "--out", str(work / "fields"), "--reports", str(work / "reports"),
              "--metrics", str(work / "headline.json"),
              "--params", str(params)],
    )
    assert result.exit_code == 0, result.output
    return work, entry


def test_field_directory_has_every_product(built):
    work, _ = built
    field = work / "fields" / "SMALL"
    names = sorted(p.name for p in field.iterdir() if p.name != MANIFEST)  # MANIFEST: what lenssearch wrote
    assert names == sorted([
        "field.json", "model.par", "deflection.fits", "members.ecsv", "convergence.png",
        "critical_lines_zs2.0.ecsv", "critical_lines_zs2.0_polygons.fits",
        "critical_lines_zs3.0.ecsv", "critical_lines_zs3.0_polygons.fits",
    ])
    info = json.loads((field / "field.json").read_text())
    assert info["kind"] == "lenstool" and info["z_lens"] == pytest.approx(0.35)
    assert info["reference_radec"] == pytest.approx(list(REF))
    assert info["critical_line_source_redshifts"] == [2.0, 3.0]
    assert not list((work / "fields").glob(".*tmp"))  # atomic: no temporary left behind
    assert (field / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deflection_map_is_the_model_on_a_tan_grid(built):
    from lenssearch.lensing.deflection_maps import read_deflection_fits
    from lenssearch.lensing.lenstool import read_parfile

    work, entry = built
    dmap = read_deflection_fits(work / "fields" / "SMALL" / "deflection.fits")
    assert dmap.shape == (200, 200)
    assert dmap.wcs.wcs.ctype[0] == "RA---TAN" and dmap.pixel_scale_arcsec == pytest.approx(0.2, rel=1e-6)
    assert_allclose(dmap.wcs.wcs.crval, REF)
    lt = read_parfile(entry["parfile"], entry["members"])
    x, y = dmap.pixel_grid_xy()
    ax, ay = lt.model.deflection(x[::37, ::41], y[::37, ::41])
    assert_allclose(dmap.alpha_x[::37, ::41], ax, atol=1e-5)  # float32 file
    assert_allclose(dmap.alpha_y[::37, ::41], ay, atol=1e-5)


def test_catalogues_and_metrics(built):
    from lenssearch.lensing.critical import read_secondary_catalogue

    work, _ = built
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    assert set(metrics) == {"SMALL"} and set(metrics["SMALL"]) == {"zs2.0", "zs3.0"}
    for z in (2.0, 3.0):
        table = read_secondary_catalogue(work / "fields" / "SMALL" / f"critical_lines_zs{z}.ecsv")
        assert set(table["member_id"]) == {"101", "102"}
        assert np.all((table["theta_e_arcsec"] > 0.2) & (table["theta_e_arcsec"] < 3.5))
        assert metrics["SMALL"][f"zs{z}"]["n_lines"] == len(table)
        assert metrics["SMALL"][f"zs{z}"]["theta_e_median_arcsec"] == pytest.approx(np.median(table["theta_e_arcsec"]))
        assert all(len(c) == n for c, n in zip(table["caustic_x"], table["n_vertices"]))
    # the headline for dvc metrics: a few numbers from the full report
    headline = json.loads((work / "headline.json").read_text())
    assert headline == {"n": sum(m["n_lines"] for m in metrics["SMALL"].values())}
    # lines grow with the source redshift
    t2 = read_secondary_catalogue(work / "fields" / "SMALL" / "critical_lines_zs2.0.ecsv")
    t3 = read_secondary_catalogue(work / "fields" / "SMALL" / "critical_lines_zs3.0.ecsv")
    by2 = dict(zip(t2["member_id"], t2["theta_e_arcsec"]))
    by3 = dict(zip(t3["member_id"], t3["theta_e_arcsec"]))
    assert all(by3[m] > by2[m] for m in by2)


def test_bad_inputs_exit_non_zero_with_one_line(small_cluster, tmp_path):
    folder, entry = small_cluster
    missing = dict(entry, parfile=str(tmp_path / "nope.par"))
    params = write_params(tmp_path, lenstool=[missing])
    result = CliRunner().invoke(app, ["field", "--out", str(tmp_path / "fields"), "--params", str(params)])
    assert result.exit_code == 2
    assert "nope.par: no such file" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["field", "--out", str(tmp_path / "fields"), "--params", str(params),
                                      "--only", "OTHER"])
    assert result.exit_code == 2 and "no field named ['OTHER']" in result.output
    assert not (tmp_path / "fields").exists()


def test_user_deflection_fits_without_wcs_exits_non_zero(tmp_path):
    """A user field whose deflection FITS has no WCS: one clear error naming the file, exit status 2."""
    from astropy.io import fits
    from astropy.table import Table

    from lenssearch.lensing.deflection_maps import tan_wcs

    wcs = tan_wcs(REF, (40, 40), 0.03)
    images = {}
    for band in ("F435W", "F606W", "F814W"):
        header = wcs.to_header()
        header["PHOTZPT"] = 25.0
        path = tmp_path / f"img_{band}.fits"
        fits.PrimaryHDU(np.random.default_rng(1).normal(0, 0.01, (40, 40)), header=header).writeto(path)
        images[band] = str(path)
    members = Table({"member_id": ["m1"], "ra": [REF[0]], "dec": [REF[1]], "z": [0.35], "mag_F435W": [22.0],
                     "mag_F606W": [21.0], "mag_F814W": [20.0]})
    members.write(tmp_path / "members.ecsv", format="ascii.ecsv")
    no_wcs = tmp_path / "deflect_nowcs.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((50, 50)), name="ALPHA_X"),
                  fits.ImageHDU(np.zeros((50, 50)), name="ALPHA_Y")]).writeto(no_wcs)
    user = [{"name": "USER", "images": images, "members": str(tmp_path / "members.ecsv"), "z_lens": 0.35,
             "deflection": str(no_wcs)}]
    params = write_params(tmp_path, user=user)
    result = CliRunner().invoke(app, ["field", "--out", str(tmp_path / "fields"), "--params", str(params)])
    assert result.exit_code == 2, result.output
    assert "deflect_nowcs.fits: no celestial WCS" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "fields" / "USER").exists()


def test_multi_plane_model_has_one_deflection_map_per_source_redshift(small_cluster, tmp_path):
    from lenssearch.lensing.deflection_maps import read_deflection_fits
    from lenssearch.lensing.lenstool import read_parfile, xy_to_radec

    folder, entry = small_cluster
    group = ("potentiel G1\n\tprofil 81\n\tx_centre 8.0\n\ty_centre -6.0\n\tellipticite 0.2\n\tangle_pos 30.0\n"
             "\tcore_radius 1.0\n\tcut_radius 40.0\n\tv_disp 350.0\n\tz_lens 1.05\n\tend\ncosmologie")
    par = tmp_path / "two_planes.par"
    par.write_text(PARFILE.replace("cosmologie", group, 1))
    entry = {**entry, "name": "TWOPLANES", "parfile": str(par)}
    params = write_params(tmp_path, lenstool=[entry])
    result = CliRunner().invoke(
        app, ["field", "--out", str(tmp_path / "fields"), "--reports", str(tmp_path),
              "--params", str(params)],
    )
    assert result.exit_code == 0, result.output
    field = tmp_path / "fields" / "TWOPLANES"
    info = json.loads((field / "field.json").read_text())
    assert info["lens_planes"]["z"] == [0.35, 1.05] and info["lens_planes"]["mode"] == "multi"
    assert info["lens_planes"]["deflection_maps"] == {"2": "deflection_zs2.0.fits", "3": "deflection_zs3.0.fits"}
    model = read_parfile(par).model
    x, y = np.array([5.0, -7.5, 12.0]), np.array([-3.0, 9.0, 1.5])
    ra, dec = xy_to_radec(x, y, *REF)
    for z_s in (2.0, 3.0):
        dmap = read_deflection_fits(field / f"deflection_zs{z_s}.fits")
        assert dmap.z_source == z_s and dmap.dds_over_ds(z_s) == 1.0
        with pytest.raises(Exception, match="use the map of that source redshift"):
            dmap.dds_over_ds(z_s + 1.0)
        # the map is the exact multi-plane lens equation at its source redshift
        px, py = dmap.xy_to_pixel(x, y)
        bx, by = model.ray_trace(x, y, z_s)
        mx, my = dmap.ray_trace(x, y, z_s)
        assert_allclose((mx, my), (bx, by), atol=2e-3)
        assert (field / f"critical_lines_zs{z_s}.ecsv").exists()
