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


#: A search of ``field`` into ``out`` with a slow model, run as a script so that a test can signal it: Ctrl-C
#: (SIGINT) exits 130 and SIGTERM 143 after unwinding, as the CLI's verbs do.
SLOW_SEARCH_SCRIPT = """
import sys


def main():
    import signal
    # a terminal delivers Ctrl-C to a job whose SIGINT is handled; a shell running the tests in the background
    # (job control off) starts it with SIGINT ignored, so put Python's handler back as a terminal job has it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {root!r})
    from lenssearch._runtime import apply_offline_env
    apply_offline_env()
    import dataclasses, time
    from pathlib import Path
    from lenssearch.cli import Terminated, _sigterm_unwinds
    from lenssearch.config import load_config
    from lenssearch.search.pipeline import run_search
    from lenssearch.search.scoring import Scorer
    from lenssearch.search.sources import open_field
    from tests.search.search_helpers import BANDS, PARAMS, build_keras_model

    model = build_keras_model()
    def predict(x):  # a slow model: the search is interrupted while it runs
        time.sleep({sleep_s!r})
        return model.predict_on_batch(x)
    cfg = load_config(PARAMS)
    s = dataclasses.replace(cfg.search, batch_size={batch_size!r}, chunk_rows={chunk_rows!r},
                            great_expectations={great_expectations!r})
    cfg = dataclasses.replace(cfg, search=s)
    field = Path({field!r})
    try:
        with _sigterm_unwinds(), open_field(BANDS, cfg.search.detection, field_dir=field,
                                            catalogue=field / "members.ecsv") as inp:
            run_search(cfg, inp, {out!r}, model_uri=Scorer(predict, "keras:slow"), log_mlflow=False,
                       progress=False)
    except Terminated:  # (a KeyboardInterrupt too: caught first)
        sys.exit(143)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
"""


def write_slow_search_script(path, field, out, *, sleep_s: float, batch_size: int, chunk_rows: int,
                             great_expectations: bool = True):
    """Write :data:`SLOW_SEARCH_SCRIPT` for ``field`` and ``out`` to ``path``; returns ``path``."""
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    Path(path).write_text(SLOW_SEARCH_SCRIPT.format(root=root, field=str(field), out=str(out), sleep_s=sleep_s,
                                                    batch_size=batch_size, chunk_rows=chunk_rows,
                                                    great_expectations=great_expectations))
    return path

