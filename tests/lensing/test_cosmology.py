"""Cosmology wrapper: distances against astropy, lensing efficiency, config and bad input."""

import numpy as np
import pytest
from astropy.cosmology import FlatLambdaCDM

from lenssearch.config import CosmologyConfig
from lenssearch.errors import LensSearchError
from lenssearch.lensing.cosmology import Cosmology


def test_distances_match_astropy():
    cosmo = Cosmology(H0=70.0, Om0=0.3)
    ref = FlatLambdaCDM(H0=70.0, Om0=0.3)
    for z in (0.1, 0.3475, 1.0, 3.0):
        assert cosmo.angular_diameter_distance(z) == pytest.approx(ref.angular_diameter_distance(z).value, rel=1e-12)
        kpc = ref.kpc_proper_per_arcmin(z).value / 60.0
        assert cosmo.kpc_per_arcsec(z) == pytest.approx(kpc, rel=1e-12)
    d_ls = ref.angular_diameter_distance(0.3475, 2.0).value
    assert cosmo.angular_diameter_distance_z1z2(0.3475, 2.0) == pytest.approx(d_ls, rel=1e-12)


def test_dds_over_ds():
    cosmo = Cosmology(H0=70.0, Om0=0.3)
    ref = FlatLambdaCDM(H0=70.0, Om0=0.3)
    z_l, z_s = 0.3475, 3.0
    expected = ref.angular_diameter_distance(z_l, z_s).value / ref.angular_diameter_distance(z_s).value
    assert cosmo.dds_over_ds(z_l, z_s) == pytest.approx(expected, rel=1e-12)
    assert cosmo.dds_over_ds(z_l, z_l) == 0.0
    assert cosmo.dds_over_ds(z_l, 0.1) == 0.0
    # efficiency grows with source redshift towards its asymptote below 1
    values = [cosmo.dds_over_ds(z_l, z) for z in (0.5, 1.0, 2.0, 6.0)]
    assert np.all(np.diff(values) > 0) and values[-1] < 1.0


def test_array_forms_equal_the_scalar_ones_bit_for_bit():
    # the simulation draws its sources' sizes and isolated lenses' efficiencies with these: the mocks must not move
    cosmo = Cosmology(H0=70.0, Om0=0.3)
    z = np.array([0.1, 0.3475, 0.44, 0.8, 1.37, 2.0, 4.5, 6.9])
    np.testing.assert_array_equal(cosmo.kpc_per_arcsec_array(z), [cosmo.kpc_per_arcsec(float(v)) for v in z])
    np.testing.assert_array_equal(cosmo.dds_over_ds_array(0.3475, z), [cosmo.dds_over_ds(0.3475, float(v)) for v in z])
    assert cosmo.dds_over_ds_array(0.44, z)[:3].tolist() == [0.0, 0.0, 0.0]  # at or in front of the lens


def test_kpc_per_arcsec_at_s1063_matches_lenstool_file():
    # best.par gives core_radius 20.132957" = 98.989554 kpc at z = 0.3475 (H0 = 70, Om = 0.3)
    assert Cosmology(70.0, 0.3).kpc_per_arcsec(0.3475) == pytest.approx(98.989554 / 20.132957, rel=1e-5)


def test_from_config_and_equality():
    cosmo = Cosmology.from_config(CosmologyConfig(H0=67.0, Om0=0.31))
    assert (cosmo.H0, cosmo.Om0) == (67.0, 0.31)
    assert cosmo == Cosmology(67.0, 0.31) and cosmo != Cosmology(70.0, 0.3)


@pytest.mark.parametrize("h0, om0", [(0.0, 0.3), (70.0, 0.0), (70.0, 1.5)])
def test_bad_parameters(h0, om0):
    with pytest.raises(LensSearchError):
        Cosmology(h0, om0)
