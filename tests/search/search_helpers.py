"""Helpers of the search tests: tiny fields written as FITS with a TAN WCS, and a tiny registered Keras model.

The model is a real Keras network whose weights are set by hand so that its score is a known function of the
cutout: ``sigmoid(w * mean(F814W in the central 8x8 pixels) + b)``. Bright compact sources ("lenses" here) score
near 1, faint ones near 0, so the pipeline's outputs can be checked against values computed independently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
BANDS = ("F435W", "F606W", "F814W")
PIXEL_SCALE = 0.03
NOISE = (0.004, 0.003, 0.005)
CENTER = (150.0, 2.2)
CUTOUT = 128
CROP = (CUTOUT - 8) // 2
WEIGHT, BIAS = 20.0, -3.0


def make_wcs(shape, crval=CENTER, pixel_scale=PIXEL_SCALE, crpix_shift=(0.0, 0.0)) -> WCS:
    """A TAN WCS, North up, East left."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = list(crval)
    wcs.wcs.crpix = [shape[1] / 2 + 0.5 + crpix_shift[0], shape[0] / 2 + 0.5 + crpix_shift[1]]
    wcs.wcs.cdelt = [-pixel_scale / 3600.0, pixel_scale / 3600.0]
    return wcs


def gaussian(shape, x0, y0, amplitude, sigma_pix):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return amplitude * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma_pix**2))


def make_field(
    path: Path,
    sources=(),
    shape=(500, 500),
    seed=1,
    wcs_per_band=None,
    shapes_per_band=None,
    no_wcs_band=None,
    pedestal=None,
) -> Path:
    """Write ``image_<BAND>.fits`` for a small field: Gaussian noise plus Gaussian sources.

    ``sources``: (x_pix, y_pix, amplitude, sigma_pix) in F814W; other bands get half the amplitude.
    ``pedestal``: (x0, x1, y0, y1, value in noise sigmas) added to every band (residual background emission).
    """
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for b, band in enumerate(BANDS):
        shp = shapes_per_band.get(band, shape) if shapes_per_band else shape
        img = rng.normal(0.0, NOISE[b], size=shp)
        for x0, y0, amp, sig in sources:
            img += gaussian(shp, x0, y0, amp if band == "F814W" else amp / 2, sig)
        if pedestal is not None:
            x0, x1, y0, y1, value = pedestal
            img[y0:y1, x0:x1] += value * NOISE[b]
        wcs = (wcs_per_band or {}).get(band, make_wcs(shp))
        header = fits.Header() if band == no_wcs_band else wcs.to_header()
        fits.PrimaryHDU(img.astype(np.float32), header=header).writeto(path / f"image_{band}.fits")
    return path


def positions_table(path: Path, xy, shape=(500, 500), ids=None, extra=None) -> Path:
    """An ECSV catalogue of positions at zero-based pixel coordinates of :func:`make_wcs`."""
    wcs = make_wcs(shape)
    xy = np.asarray(xy, float).reshape(-1, 2)
    ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
    t = Table({"id": ids or [f"s{i}" for i in range(len(xy))], "ra": ra, "dec": dec})
    for k, v in (extra or {}).items():
        t[k] = v
    t.write(path, format="ascii.ecsv", overwrite=True)
    return path


def expected_score(cutouts: np.ndarray) -> np.ndarray:
    """The tiny model's score computed with numpy."""
    centre = cutouts[:, CROP : CROP + 8, CROP : CROP + 8, 2].mean(axis=(1, 2))
    return 1.0 / (1.0 + np.exp(-(WEIGHT * centre + BIAS)))


def build_keras_model():
    import keras

    inp = keras.Input((CUTOUT, CUTOUT, 3))
    x = keras.layers.Cropping2D(CROP)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    model.layers[-1].set_weights([np.array([[0.0], [0.0], [WEIGHT]], "float32"), np.array([BIAS], "float32")])
    return model


class TinyCommittee:
    """A committee pyfunc of two numpy 'networks' (the tiny model's score and its square), averaged.

    With the inference parameter ``return_members`` it returns a DataFrame with one column per member and
    ``probability``, as ``lenssearch.evaluate.committee_model`` does.
    """

    members = ("bright", "bright_sq")

    @staticmethod
    def member_scores(x):
        p = expected_score(np.asarray(x))
        return {"bright": p, "bright_sq": p**2}

    @classmethod
    def python_model(cls):
        import mlflow

        class Committee(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                import pandas as pd

                scores = cls.member_scores(model_input)
                mean = (scores["bright"] + scores["bright_sq"]) / 2
                if params and params.get("return_members"):
                    return pd.DataFrame({**scores, "probability": mean})
                return mean

        return Committee()


def shm_in_use(pids) -> set[str]:
    """The /dev/shm files that the processes ``pids`` have mapped (Linux /proc), e.g. shared-memory blocks."""
    found = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        found |= {line.split()[-1] for line in maps.splitlines() if "/dev/shm/" in line}
    return {p.replace(" (deleted)", "") for p in found}
