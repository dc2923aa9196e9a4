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
from lenssearch.lensing.lenstool_check import lenstool_check, solve_lens_equation

DATA = Path(__file__).resolve().parents[2] / "src/lenssearch/data/lenstool/AS1063_cats_gold"
REF = (342.18322, -44.530889)


def test_s1063_cats_gold_image_plane_rms():
    result = lenstool_check(DATA / "best.par", DATA / "mul_gold.cat")
    # published CATS gold model of Abell S1063: image-plane rms ~0.5"
    assert result.total_image_rms_arcsec <= 0.6
    assert result.total_source_scatter_arcsec < 0.3
    assert len(result.families) == 19 and result.families.meta["n_images"] == 50
    assert np.all(result.families["converged"])
    assert np.all(result.images["offset_arcsec"] < 2.5)


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
        assert ok
        if all(np.hypot(x - u, y - v) > 0.5 for u, v in images):
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
    result = lenstool_check(par, mul)
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
    assert match and float(match.group(1)) <= 0.6
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
