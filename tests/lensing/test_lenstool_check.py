"""lenstool-check: the acceptance test of the lensing core on the Abell S1063 CATS model, a synthetic model with
exact images, and the command line (output, ECSV, bad input)."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from lenssearch.lensing.lenstool import read_parfile, xy_to_radec
from lenssearch.errors import LensToolError
from lenssearch.lensing.lenstool_check import lenstool_check, pair_images, solve_lens_equation

DATA = Path(__file__).resolve().parents[2] / "src/lenssearch/data/lenstool/AS1063_cats_gold"
A2744 = DATA.parent / "A2744_hff"
REF = (342.18322, -44.530889)


def test_s1063_cats_gold_image_plane_rms_is_lenstools():
    result = lenstool_check(DATA / "best.par", DATA / "mul_gold.cat", progress=False)
    # LensTool's own figure: the best.par header's Chi2pos 48.852 over 50 images at 0.5": 0.494"
    assert result.lenstool_rms_arcsec == pytest.approx(np.sqrt(48.851984 * 0.25 / 50))
    assert abs(result.total_image_rms_arcsec - result.lenstool_rms_arcsec) <= 0.01
    assert result.barycentre == "magnification"
    assert result.total_source_scatter_arcsec < 0.3
    assert len(result.families) == 19 and result.families.meta["n_images"] == 50
    assert np.all(result.families["converged"]) and np.all(result.images["paired"])
    assert np.all(result.images["offset_arcsec"] < 2.5)
    # the plain mean (forme -1) is another, larger figure: the barycentre matters at this precision
    mean = lenstool_check(DATA / "best.par", DATA / "mul_gold.cat", barycentre="mean", progress=False)
    assert mean.total_image_rms_arcsec > result.total_image_rms_arcsec + 0.03


def test_a2744_hff_image_plane_rms_is_lenstools():
    result = lenstool_check(A2744 / "best.par", A2744 / "img_mul_constraints.cat", progress=False)
    assert result.lenstool_rms_arcsec == pytest.approx(0.672, abs=5e-4)
    assert abs(result.total_image_rms_arcsec - result.lenstool_rms_arcsec) <= 0.01
    assert len(result.families) == 29 and result.families.meta["n_images"] == 83
    proc = _run_cli(A2744 / "best.par", A2744 / "img_mul_constraints.cat", "--sigpos", "0.25")
    assert proc.returncode == 0, proc.stderr
    assert "LensTool (header Chi2pos 150.084): 0.3362 arcsec" in proc.stdout  # half the 0.5" figure


def _synthetic_par(tmp_path):
    par = tmp_path / "synthetic.par"
    par.write_text(
        f"runmode\n\treference 3 {REF[0]} {REF[1]}\n\tend\n"
        "potentiel halo\n\tprofil 81\n\tx_centre 0.5\n\ty_centre -0.3\n\tellipticite 0.3\n\tangle_pos 25.\n"
        "\tcore_radius_kpc 20.\n\tcut_radius_kpc 800.\n\tv_disp 900.\n\tz_lens 0.35\n\tend\n"
        "potentiel gal\n\tprofil 81\n\tx_centre 8.\n\ty_centre 3.\n\tellipticite 0.2\n\tangle_pos -40.\n"
        "\tcore_radius 0.02\n\tcut_radius 6.\n\tv_disp 180.\n\tz_lens 0.35\n\tend\n"
        "potentiel shear\n\tprofil 14\n\tgamma 0.05\n\tangle_pos 70.\n\tz_lens 0.35\n\tend\n"
        "cosmologie\n\tH0 70.\n\tomegaM 0.3\n\tomegaX 0.7\n\tend\nfini\n"
    )
    return par


def _exact_images(model, beta, z_s, guesses):
    images = []
    for gx, gy in guesses:
        x, y, ok = solve_lens_equation(model, beta[0], beta[1], z_s, gx, gy)
        if ok and all(np.hypot(x - u, y - v) > 0.5 for u, v in images):
            images.append((x, y))
    return images


def test_synthetic_model_with_exact_images_has_zero_rms(tmp_path):
    par = _synthetic_par(tmp_path)
    lt = read_parfile(par)
    lines = []
    for family, (z_s, beta) in enumerate([(2.0, (1.0, 0.5)), (3.5, (-0.8, 1.2)), (1.5, (0.3, -1.0))], start=1):
        guesses = [(r * np.cos(t), r * np.sin(t)) for r in (15.0, 25.0) for t in np.linspace(0, 2 * np.pi, 6)]
        images = _exact_images(lt.model, beta, z_s, guesses)
        assert len(images) >= 2
        for k, (x, y) in enumerate(images, start=1):
            ra, dec = xy_to_radec(x, y, *REF)
            lines.append(f"{family}.{k} {ra:.11f} {dec:.11f} 0.1 0.1 0.0 {z_s} 0.0")
    mul = tmp_path / "mul.cat"
    mul.write_text("# id RA Dec a b theta z mag\n" + "\n".join(lines) + "\n")
    result = lenstool_check(par, mul, progress=False)
    assert result.total_image_rms_arcsec < 1e-5
    assert result.total_source_scatter_arcsec < 1e-5
    # moving one image by 0.5" makes the rms grow, as it must
    x0, y0 = lt.radec_to_xy(*[float(v) for v in lines[0].split()[1:3]])
    ra, dec = xy_to_radec(x0 + 0.5, y0, *REF)
    lines[0] = f"1.1 {ra:.11f} {dec:.11f} 0.1 0.1 0.0 2.0 0.0"
    mul.write_text("\n".join(lines) + "\n")
    assert lenstool_check(par, mul).total_image_rms_arcsec > 0.05


def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lenssearch", "lenstool-check", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_s1063(tmp_path):
    out = tmp_path / "check" / "families.ecsv"
    proc = _run_cli(DATA / "best.par", DATA / "mul_gold.cat", "--out", out)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"total image-plane rms: (\d+\.\d+) arcsec", last)
    assert match and abs(float(match.group(1)) - 0.494) <= 0.01
    assert "LensTool (header Chi2pos 48.852): 0.4942 arcsec" in proc.stdout
    assert "total source-plane scatter:" in proc.stdout
    table = Table.read(out, format="ascii.ecsv")
    assert len(table) == 19 and table.meta["total_image_rms_arcsec"] == pytest.approx(float(match.group(1)), abs=1e-4)
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize("case", ["unknown_profil", "truncated", "missing_columns"])
def test_cli_bad_input_is_one_clear_error(tmp_path, case):
    par, mul = tmp_path / "best.par", tmp_path / "mul.cat"
    par.write_text(f"runmode\n\treference 3 {REF[0]} {REF[1]}\n\tend\n"
                   "potentiel A\n\tprofil 1\n\tv_disp 250.\n\tz_lens 0.4\n\tend\nfini\n")
    mul.write_text("1.1 342.19 -44.52 0.1 0.1 0.0 1.2 0.0\n1.2 342.18 -44.53 0.1 0.1 0.0 1.2 0.0\n")
    if case == "unknown_profil":
        par.write_text(par.read_text().replace("profil 1", "profil 99"))
        expected = "best.par, line 5: unsupported profil 99"
    elif case == "truncated":
        par.write_text(par.read_text().replace("\tend\nfini\n", ""))
        expected = "best.par, line 4: block 'potentiel A' is truncated"
    else:
        mul.write_text("1.1 342.19 -44.52 0.1 0.1 0.0 1.2 0.0\n1.2 342.18 -44.53 0.1 0.1\n")
        expected = "mul.cat, line 2: a multiple-image catalogue expects 8 columns"
    proc = _run_cli(par, mul)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------- LensTool's conventions
def _family_lines(model, families, guesses_radii=(15.0, 25.0), redshift_column=None):
    """Catalogue lines of the exact images of ``(family, z_s, beta)`` sources (z written as redshift_column)."""
    lines = []
    for family, z_s, beta in families:
        guesses = [(r * np.cos(t), r * np.sin(t)) for r in guesses_radii for t in np.linspace(0, 2 * np.pi, 8)]
        images = _exact_images(model, beta, z_s, guesses)
        assert len(images) >= 2
        z_text = z_s if redshift_column is None else redshift_column.get(family, z_s)
        for k, (x, y) in enumerate(images, start=1):
            ra, dec = xy_to_radec(x, y, *REF)
            lines.append(f"{family}.{k} {ra:.11f} {dec:.11f} 0.1 0.1 0.0 {z_text} 0.0")
    return lines


def test_family_with_z_m_limit_redshift(tmp_path):
    par = _synthetic_par(tmp_path)
    lt = read_parfile(par)
    lines = _family_lines(lt.model, [(1, 2.0, (1.0, 0.5)), (2, 3.5, (-0.8, 1.2))], redshift_column={2: 0})
    mul = tmp_path / "mul.cat"
    mul.write_text("\n".join(lines) + "\n")
    # family 2 has z = 0 in the catalogue: without z_m_limit it is left out, with a warning naming it
    result = lenstool_check(par, mul, progress=False)
    assert list(result.families["family"]) == ["1"]
    assert any("family '2'" in note and "left out" in note for note in result.notes)
    # the best.par's image block gives its optimised redshift (LensTool: z_m_limit idx family flag z ...)
    text = par.read_text().replace("fini\n", "image\n\tforme -2\n\tz_m_limit 1 2 0 3.5 0.0 0.0\n\tend\nfini\n")
    par.write_text(text)
    result = lenstool_check(par, mul, progress=False)
    assert list(result.families["family"]) == ["1", "2"]
    assert list(result.families["z_origin"]) == ["catalogue", "z_m_limit"]
    assert result.total_image_rms_arcsec < 1e-5
    # a wrong optimised redshift is seen in the rms
    par.write_text(text.replace("z_m_limit 1 2 0 3.5", "z_m_limit 1 2 0 2.5"))
    assert lenstool_check(par, mul, progress=False).total_image_rms_arcsec > 0.05
    # LensTool's other spellings: several families bound to one redshift, a family written as a float or by one
    # of its images
    for line in ("z_m_limit 1 2 7 0 3.500  0.000  0.0000", "z_m_limit 1 2.0 0 3.500  0.000  0.0000",
                 "z_m_limit 1 2.1 0 3.500  0.000  0.0000"):
        par.write_text(text.replace("z_m_limit 1 2 0 3.5 0.0 0.0", line))
        assert lenstool_check(par, mul, progress=False).total_image_rms_arcsec < 1e-5, line
    # a family with a catalogue redshift that the fit optimised: the best model's z_m_limit value is used
    mul.write_text("\n".join(_family_lines(lt.model, [(1, 2.0, (1.0, 0.5)), (2, 3.5, (-0.8, 1.2))],
                                            redshift_column={2: 2.8})) + "\n")
    result = lenstool_check(par, mul, progress=False)
    assert list(result.families["z_origin"]) == ["catalogue", "z_m_limit"] and result.total_image_rms_arcsec < 1e-5
    assert any("has z = 2.8" in note and "used the optimised one" in note for note in result.notes)
    mul.write_text("\n".join(lines) + "\n")
    # an input par file's prior (flag 1) is taken at its first bound, with a warning
    par.write_text(text.replace("z_m_limit 1 2 0 3.5 0.0 0.0", "z_m_limit 1 2 1 3.5 5.0 0.1"))
    result = lenstool_check(par, mul, progress=False)
    assert result.total_image_rms_arcsec < 1e-5
    assert any("is a prior (flag 1)" in note for note in result.notes)
    # or a '#N z:' line of the catalogue (as LensTool prints its optimised redshifts)
    par.write_text(text.replace("\tz_m_limit 1 2 0 3.5 0.0 0.0\n", ""))
    mul.write_text("#2 z:3.500 dlsds:0.712\n" + "\n".join(lines) + "\n")
    result = lenstool_check(par, mul, progress=False)
    assert list(result.families["z_origin"]) == ["catalogue", "header"]
    assert result.total_image_rms_arcsec < 1e-5


def test_family_with_mixed_redshifts_is_an_error(tmp_path):
    par = _synthetic_par(tmp_path)
    mul = tmp_path / "mul.cat"
    mul.write_text("1.1 342.19 -44.52 0.1 0.1 0.0 1.2 0.0\n1.2 342.18 -44.53 0.1 0.1 0.0 1.3 0.0\n")
    with pytest.raises(LensToolError, match=r"family '1' has mixed redshifts \(line 1: z = 1.2, line 2: z = 1.3\)"):
        lenstool_check(par, mul, progress=False)


def test_pairing_is_one_to_one_across_a_critical_line():
    # two observed images of a close pair, both nearer to the first predicted image than to the second
    x_obs, y_obs = np.array([0.0, 0.3]), np.array([0.0, 0.0])
    x_pred, y_pred = np.array([0.1, 0.9]), np.array([0.0, 0.0])
    index, paired = pair_images(x_obs, y_obs, x_pred, y_pred)
    assert list(index) == [0, 1] and paired.all()
    # fewer predicted images than observed: the leftover takes the nearest, flagged
    index, paired = pair_images(x_obs, y_obs, x_pred[:1], y_pred[:1])
    assert list(index) == [0, 0] and list(paired) == [True, False]


def _two_plane_par(tmp_path):
    par = tmp_path / "two_planes.par"
    par.write_text(
        f"runmode\n\treference 3 {REF[0]} {REF[1]}\n\tend\n"
        "potentiel halo\n\tprofil 81\n\tx_centre 0.5\n\ty_centre -0.3\n\tellipticite 0.3\n\tangle_pos 25.\n"
        "\tcore_radius_kpc 20.\n\tcut_radius_kpc 800.\n\tv_disp 900.\n\tz_lens 0.375\n\tend\n"
        "potentiel background_group\n\tprofil 81\n\tx_centre 9.\n\ty_centre 4.\n\tellipticite 0.2\n"
        "\tangle_pos -40.\n\tcore_radius 0.5\n\tcut_radius 20.\n\tv_disp 450.\n\tz_lens 1.05\n\tend\n"
        "cosmologie\n\tH0 70.\n\tomegaM 0.3\n\tomegaX 0.7\n\tend\nfini\n"
    )
    return par


def test_multi_plane_model_and_lenstool6_single_plane_option(tmp_path):
    par = _two_plane_par(tmp_path)
    lt = read_parfile(par)
    assert lt.multi_plane and lt.z_planes == (0.375, 1.05) and lt.z_lens == 0.375
    lines = _family_lines(lt.model, [(1, 2.0, (1.0, 0.5)), (2, 3.5, (-0.8, 1.2)), (3, 0.9, (0.3, -1.0))])
    mul = tmp_path / "mul.cat"
    mul.write_text("\n".join(lines) + "\n")
    result = lenstool_check(par, mul, progress=False)
    assert result.families.meta["planes"] == "multi"
    assert result.total_image_rms_arcsec < 1e-5
    # LensTool 6 puts the background group at z = 0.375: other images, a non-zero rms
    single = lenstool_check(par, mul, planes="single", progress=False)
    assert single.families.meta["planes"] == "single"
    assert single.total_image_rms_arcsec > 0.05
    # each check also reports the other convention, so a user sees which one a header was fitted with
    assert result.other_planes == ("single", pytest.approx(single.total_image_rms_arcsec))
    assert single.other_planes == ("multi", pytest.approx(result.total_image_rms_arcsec))
    proc = _run_cli(par, mul)
    assert proc.returncode == 0, proc.stderr
    assert "lens planes at z = 0.375, 1.05: multi-plane ray tracing" in proc.stdout
    assert "with single plane at z = 0.375 (LensTool 6) instead: image-plane rms" in proc.stdout
    same = read_parfile(Path(par), planes="single").model
    flat = read_parfile(_write_all_at(tmp_path, par, 0.375)).model
    x, y = np.linspace(-20, 20, 11), np.linspace(10, -10, 11)
    np.testing.assert_allclose(same.ray_trace(x, y, 2.0), flat.ray_trace(x, y, 2.0), atol=1e-12)


def _write_all_at(tmp_path, par, z):
    out = tmp_path / "flat.par"
    out.write_text(par.read_text().replace("z_lens 1.05", f"z_lens {z}"))
    return out


S1063_PAR_LINES = 3737


@pytest.mark.parametrize("case", ["cut_at_block_boundary", "potentials_missing", "no_cosmologie"])
def test_cli_truncated_and_incomplete_par_files(tmp_path, case):
    lines = (DATA / "best.par").read_text().splitlines()
    assert len(lines) == S1063_PAR_LINES
    par = tmp_path / "best.par"
    if case == "cut_at_block_boundary":
        # the first 56 lines end with a complete block: it used to give rms 4.66" and exit 0
        assert lines[55].strip() == "end"
        par.write_text("\n".join(lines[:56]) + "\n")
        expected = "best.par, line 56: the file ends without 'fini' after block 'potentiel O3' (line 43)"
    elif case == "potentials_missing":
        par.write_text("\n".join(lines[:56] + lines[3710:]) + "\n")
        expected = "best.par, line 21: 'nlentille 264' but the file defines 3 potentials"
    else:
        start = next(i for i, line in enumerate(lines) if line.startswith("cosmologie"))
        par.write_text("\n".join(lines[:start] + lines[start + 9:]) + "\n")
        expected = None
    (tmp_path / "ref_potential_w_clumpNE.cat").write_text((DATA / "ref_potential_w_clumpNE.cat").read_text())
    proc = _run_cli(par, DATA / "mul_gold.cat")
    if expected is None:
        assert proc.returncode == 0, proc.stderr
        assert "no 'cosmologie' block; assumed LensTool's default flat LambdaCDM, H0 = 70" in proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith("total image-plane rms: 0.49")
        return
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error:") and expected in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_close_pair_across_a_critical_line_is_paired_one_to_one(tmp_path):
    par = _synthetic_par(tmp_path)
    model = read_parfile(par).model
    # two observed images on the same side of the critical line near x = 8.7" (z_s = 2): Newton from each finds
    # the same predicted image; the counter-image across the line must be the second one's partner
    x, y = np.array([8.40, 8.66]), np.zeros(2)
    lines = []
    for k, (xi, yi) in enumerate(zip(x, y), start=1):
        ra, dec = xy_to_radec(xi, yi, *REF)
        lines.append(f"1.{k} {ra:.11f} {dec:.11f} 0.1 0.1 0.0 2.0 0.0")
    mul = tmp_path / "mul.cat"
    mul.write_text("\n".join(lines) + "\n")
    result = lenstool_check(par, mul, barycentre="mean", progress=False)
    bx, by = result.families["source_x"][0], result.families["source_y"][0]
    local = [solve_lens_equation(model, bx, by, 2.0, xi, yi)[:2] for xi, yi in zip(x, y)]
    assert np.hypot(*np.subtract(local[0], local[1])) < 1e-6  # nearest-image search: one image for both
    px, py = np.asarray(result.images["x_pred"]), np.asarray(result.images["y_pred"])
    assert np.all(result.images["paired"]) and np.hypot(px[1] - px[0], py[1] - py[0]) > 0.3
    a11, a12, a21, a22 = model.jacobian_matrix(px, py, 2.0)
    assert np.sign(a11[0] * a22[0] - a12[0] * a21[0]) != np.sign(a11[1] * a22[1] - a12[1] * a21[1])
