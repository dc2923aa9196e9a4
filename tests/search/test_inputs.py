"""Field images (WCS, alignment, cutting), catalogues and cutout stacks: good input read right, bad input refused."""

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from .search_helpers import BANDS, make_field, make_wcs, positions_table

from lenssearch.search.catalogues import detect_sources, read_positions
from lenssearch.search.inputs import CutoutStack, FieldImages, SearchInputError


def test_cut_matches_direct_slicing_and_pads_edges(tmp_path):
    field = make_field(tmp_path / "f", shape=(300, 400))
    with FieldImages.from_field_dir(field, BANDS) as images:
        assert images.shape == (300, 400)
        assert images.pixel_scale_arcsec == pytest.approx(0.03)
        raw = fits.getdata(field / "image_F606W.fits")
        cut, inside = images.cut([100.2, 3.0], [150.6, 290.0], 64)
        np.testing.assert_array_equal(cut[0, :, :, 1], raw[151 - 32 : 151 + 32, 100 - 32 : 100 + 32])
        assert inside[0] == 1.0
        # Partly off the image: the on-image part is copied, the rest is zero, and the fraction says so.
        np.testing.assert_array_equal(cut[1, :42, 29:, 1], raw[258:, :35])
        assert (cut[1, 42:, :, :] == 0).all() and (cut[1, :, :29, :] == 0).all()
        assert inside[1] == pytest.approx(42 * 35 / 64**2)


def test_cut_into_a_reused_buffer_and_from_an_image_smaller_than_a_cutout(tmp_path):
    """Cutting into a buffer that held other cutouts gives the cutouts of a fresh array (padding zeroed); an image
    smaller than the cutout gives its pixels, zero-padded, and no error."""
    field = make_field(tmp_path / "f", shape=(300, 400))
    with FieldImages.from_field_dir(field, BANDS) as images:
        x, y = [100.2, 3.0, 390.0, 200.0], [150.6, 290.0, 10.0, 150.0]
        fresh, inside = images.cut(x, y, 64)
        buffer = np.full((6, 64, 64, 3), 7.0, np.float32)
        cut, inside_buffered = images.cut(x, y, 64, out=buffer)
        assert np.shares_memory(cut, buffer) and cut.shape == fresh.shape
        np.testing.assert_array_equal(cut, fresh)
        np.testing.assert_array_equal(inside_buffered, inside)
    small = make_field(tmp_path / "small", shape=(50, 60))
    with FieldImages.from_field_dir(small, BANDS) as images:
        cut, inside = images.cut([30.0], [25.0], 64)
        raw = fits.getdata(small / "image_F814W.fits")
        np.testing.assert_array_equal(cut[0, 7:57, 2:62, 2], raw)
        assert inside[0] == pytest.approx(50 * 60 / 64**2)


def test_world_to_pixel_round_trip(tmp_path):
    field = make_field(tmp_path / "f")
    with FieldImages.from_field_dir(field, BANDS) as images:
        ra, dec = images.pixel_to_world([10.0, 250.5], [20.0, 499.0])
        x, y = images.world_to_pixel(ra, dec)
        np.testing.assert_allclose(x, [10.0, 250.5], atol=1e-8)
        assert images.contains(np.array([-0.6, 0.0, 499.4, 499.6]), np.zeros(4)).tolist() == [False, True, True, False]


def test_noise_is_estimated_from_the_image(tmp_path):
    field = make_field(tmp_path / "f", sources=[(250, 250, 1.0, 20.0)])
    with FieldImages.from_field_dir(field, BANDS) as images:
        np.testing.assert_allclose(images.noise_sigma, [0.004, 0.003, 0.005], rtol=0.05)


def test_fits_without_wcs_is_refused(tmp_path):
    field = make_field(tmp_path / "f", no_wcs_band="F606W")
    with pytest.raises(SearchInputError, match=r"image_F606W.fits: no celestial WCS"):
        FieldImages.from_field_dir(field, BANDS)


def test_bands_of_different_sizes_are_refused(tmp_path):
    field = make_field(tmp_path / "f", shapes_per_band={"F814W": (500, 480)})
    with pytest.raises(SearchInputError, match="bands of different sizes.*480x500"):
        FieldImages.from_field_dir(field, BANDS)


def test_misaligned_bands_are_refused(tmp_path):
    field = make_field(tmp_path / "f", wcs_per_band={"F435W": make_wcs((500, 500), crpix_shift=(0.5, 0.0))})
    with pytest.raises(SearchInputError, match=r"image_F435W.fits: WCS not aligned .*offset 0.5 pixels"):
        FieldImages({b: field / f"image_{b}.fits" for b in ("F814W", "F435W")})


def test_missing_image_is_refused(tmp_path):
    with pytest.raises(SearchInputError, match="image_F435W.fits: no such image"):
        FieldImages.from_field_dir(tmp_path, BANDS)


def test_catalogue_columns_and_errors(tmp_path):
    path = positions_table(tmp_path / "c.ecsv", [(10, 10), (20, 30)], extra={"kron_radius_arcsec": [0.5, 0.7]})
    t = read_positions(path)
    assert t.colnames[:3] == ["id", "ra", "dec"] and "kron_radius_arcsec" in t.colnames
    Table({"RA": [1.0], "DEC": [2.0]}).write(tmp_path / "upper.fits")
    assert read_positions(tmp_path / "upper.fits")["ra"][0] == 1.0
    Table({"id": np.array([], str), "ra": np.array([], float), "dec": np.array([], float)}).write(tmp_path / "empty.ecsv")
    with pytest.raises(SearchInputError, match="empty.ecsv: the catalogue is empty"):
        read_positions(tmp_path / "empty.ecsv")
    Table({"x": [1.0], "y": [2.0]}).write(tmp_path / "xy.ecsv")
    with pytest.raises(SearchInputError, match="xy.ecsv: no RA/Dec columns"):
        read_positions(tmp_path / "xy.ecsv")
    Table({"ra": [1.0, np.nan], "dec": [2.0, 3.0]}).write(tmp_path / "nan.ecsv")
    with pytest.raises(SearchInputError, match="nan.ecsv: row 1 has a non-finite RA/Dec"):
        read_positions(tmp_path / "nan.ecsv")


def test_tiled_detection_finds_each_source_once(tmp_path):
    xy = [(50, 60), (199, 201), (201, 350), (400, 120), (300, 301)]  # some on tile boundaries (tile 200)
    field = make_field(tmp_path / "f", sources=[(x, y, 0.5, 3.0) for x, y in xy])
    with FieldImages.from_field_dir(field, BANDS) as images:
        tiled = detect_sources(images, "F814W", 5.0, 10, tile_pix=200, margin_pix=30)
        whole = detect_sources(images, "F814W", 5.0, 10, tile_pix=1000, margin_pix=30)
    assert len(tiled) == len(whole) == len(xy)
    found = np.column_stack([tiled["x_pix"], tiled["y_pix"]])
    for x, y in xy:
        assert np.min(np.hypot(found[:, 0] - x, found[:, 1] - y)) < 0.2
    # Kron radius of a Gaussian: sqrt(pi/2) sigma
    np.testing.assert_allclose(tiled["kron_radius_arcsec"], np.sqrt(np.pi / 2) * 3.0 * 0.03, rtol=0.2)


def test_stacks_fits_and_hdf5(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(5, 16, 16, 3)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(cube), fits.BinTableHDU(Table({"id": list("abcde"), "label": [1, 0, 0, 1, 0]}))]).writeto(
        tmp_path / "c.fits"
    )
    with CutoutStack(tmp_path / "c.fits", 3) as stack:
        assert stack.n == 5 and stack.size == 16
        np.testing.assert_array_equal(stack.read(1, 3), cube[1:3])
        assert list(stack.table["id"]) == list("abcde") and np.isnan(stack.table["ra"]).all()
    fits.PrimaryHDU(np.moveaxis(cube, -1, 1)).writeto(tmp_path / "first.fits")
    with CutoutStack(tmp_path / "first.fits", 3) as stack:
        np.testing.assert_array_equal(stack.read(0, 5), cube)
    with h5py.File(tmp_path / "kb.h5", "w") as h5:
        h5["cutouts"] = cube
        h5["ids"] = np.array([b"a", b"b", b"c", b"d", b"e"])
        h5["labels"] = np.array([1, 0, 0, 1, 0], np.int8)
    with CutoutStack(tmp_path / "kb.h5", 3) as stack:
        assert list(stack.table["id"]) == list("abcde") and list(stack.table["label"]) == [1, 0, 0, 1, 0]
        np.testing.assert_array_equal(stack.read(0, 5), cube)
    fits.PrimaryHDU(cube[..., :2]).writeto(tmp_path / "two.fits")
    with pytest.raises(SearchInputError, match="two.fits: cutouts have shape"):
        CutoutStack(tmp_path / "two.fits", 3)


def test_ecsv_catalogue_read_column_wise_matches_astropy(tmp_path):
    t = Table({"member_id": ["a b", "c", "nan", "d"], "ra": [1.0, 2.0, 3.5, 4.0], "dec": [1.0, 2.0, 3.0, -4.0],
               "label": ["secure", "no", "uncertain", "secure"], "kron_radius_arcsec": [0.1, np.nan, 0.3, 0.4],
               "is_lens": [1, 0, 1, 0], "unused": [True, False, True, False]})
    t.write(tmp_path / "c.ecsv")
    r = read_positions(tmp_path / "c.ecsv")
    assert r.colnames == ["id", "ra", "dec", "label", "is_lens", "kron_radius_arcsec"]
    assert list(r["id"]) == ["a b", "c", "nan", "d"] and list(r["label"]) == list(t["label"])
    np.testing.assert_array_equal(r["dec"], t["dec"])
    np.testing.assert_array_equal(r["kron_radius_arcsec"], t["kron_radius_arcsec"])
    assert r["is_lens"].dtype.kind == "i"


def test_fits_catalogue_is_read_in_chunks_as_astropy_reads_it(tmp_path):
    from lenssearch.search.catalogues import FitsCatalogue

    rng = np.random.default_rng(3)
    n = 1000
    t = Table({"source_id": [f"g{i:05d}" for i in range(n)], "RA": rng.uniform(149, 151, n),
               "DEC": rng.uniform(2, 3, n), "is_lens": rng.integers(0, 2, n).astype(bool),
               "kron_radius_arcsec": rng.uniform(0.1, 1.0, n).astype(np.float32), "other": np.zeros((n, 3))})
    t.write(tmp_path / "big.fits")
    whole = read_positions(tmp_path / "big.fits")
    lazy = read_positions(tmp_path / "big.fits", lazy=True)
    assert isinstance(lazy, FitsCatalogue) and len(lazy) == n and lazy.colnames == whole.colnames
    for start in (0, 300, 999):
        part = lazy.rows(start, start + 300)
        for name in whole.colnames:
            np.testing.assert_array_equal(part[name], whole[name][start : start + 300])
    t["RA"][777] = np.nan
    t.write(tmp_path / "bad.fits")
    with pytest.raises(SearchInputError, match="bad.fits: row 777 has a non-finite RA/Dec"):
        read_positions(tmp_path / "bad.fits", lazy=True)
    Table({"ra": np.array([], float), "dec": np.array([], float)}).write(tmp_path / "empty.fits")
    with pytest.raises(SearchInputError, match="empty.fits: the catalogue is empty"):
        read_positions(tmp_path / "empty.fits", lazy=True)
