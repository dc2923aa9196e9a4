"""Stamps of a candidate for the inspection page, rendered once into the inspection folder's ``cache/``.

For each candidate: RGB stamps 4" and 10" across and an 80" context image (HOLISMOKES XVI Sect. 4 shows 10" and
80"; the search's gallery 4"), each in three scalings (:data:`SCALINGS`): the asinh scaling of Lupton et al.
(2004) as the search's gallery (:func:`lenssearch.search.gallery.lupton_rgb`), linear with clipping, and square
root; the single bands of the 10" stamp; and, when the field's members have redshifts, the histogram of the
redshifts of the members within 100" (else a colour-magnitude diagram of them, if they have magnitudes).

All images of a candidate are rendered together on the first request (one lock per candidate) and written to
``cache/<candidate id>/<kind>.png`` under a temporary name, then renamed. North is up, East left.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np

SCALINGS = ("lupton", "linear", "sqrt")
SCALING_NAMES = {"lupton": "Lupton asinh", "linear": "linear, clipped", "sqrt": "square root"}
#: Stamp sizes (arcsec) by name.
SIZES = {"stamp4": 4.0, "stamp10": 10.0, "context80": 80.0}
#: Radius (arcsec) of the environment whose members' redshifts are shown.
ENVIRONMENT_RADIUS_ARCSEC = 100.0
#: Longest side (pixels) of a rendered context image (the 80" image is block-averaged down to it).
MAX_PIXELS = 400
#: Image kinds that exist; anything else is refused before a path is built.
KIND_RE = re.compile(r"^(?:(?:stamp4|stamp10|context80)_(?:lupton|linear|sqrt)|band[0-9]|hist)$")

_locks: dict[tuple[str, int], threading.Lock] = {}
_locks_guard = threading.Lock()


def valid_kind(kind: str) -> bool:
    return bool(KIND_RE.match(kind))


def image_kinds(n_bands: int) -> list[str]:
    return [f"{s}_{c}" for s in SIZES for c in SCALINGS] + [f"band{b}" for b in range(n_bands)] + ["hist"]


# ---------------------------------------------------------------------------------------------- scalings
def linear_rgb(stamp: np.ndarray, noise_sigma: np.ndarray, clip_percentile: float = 99.5) -> np.ndarray:
    """Linear RGB, each band from -1 sigma to its ``clip_percentile`` percentile (at least 5 sigma), North up."""
    return _per_band_rgb(stamp, noise_sigma, clip_percentile, lambda x: x)


def sqrt_rgb(stamp: np.ndarray, noise_sigma: np.ndarray, clip_percentile: float = 99.5) -> np.ndarray:
    """Square-root RGB over the same clipped range as :func:`linear_rgb`."""
    return _per_band_rgb(stamp, noise_sigma, clip_percentile, np.sqrt)


def _per_band_rgb(stamp, noise_sigma, clip_percentile, stretch) -> np.ndarray:
    scaled = np.nan_to_num(stamp / np.asarray(noise_sigma)[None, None, :], nan=0.0)
    n = scaled.shape[-1]
    channels = [scaled[..., n - 1], scaled[..., n // 2] if n > 1 else scaled[..., 0], scaled[..., 0]]
    out = []
    for ch in channels:
        top = max(float(np.percentile(ch, clip_percentile)), 5.0)
        x = np.clip((ch + 1.0) / (top + 1.0), 0.0, 1.0)
        out.append(stretch(x))
    rgb = np.stack(out, axis=-1)[::-1]
    return (rgb * 255 + 0.5).astype(np.uint8)


def band_grey(image: np.ndarray, sigma: float) -> np.ndarray:
    """One band as 8-bit grey, asinh from -1 sigma to its 99.7th percentile, North up."""
    x = np.nan_to_num(image / sigma, nan=0.0)
    top = max(float(np.percentile(x, 99.7)), 5.0)
    y = np.arcsinh(np.clip(x + 1.0, 0, None)) / np.arcsinh(top + 1.0)
    return (np.clip(y, 0, 1)[::-1] * 255 + 0.5).astype(np.uint8)


def rgb(stamp: np.ndarray, noise_sigma: np.ndarray, scaling: str, stretch_sigma: float = 10.0, q: float = 8.0):
    from lenssearch.search.gallery import lupton_rgb

    if scaling == "lupton":
        return lupton_rgb(stamp, noise_sigma, stretch_sigma, q)
    if scaling == "linear":
        return linear_rgb(stamp, noise_sigma)
    if scaling == "sqrt":
        return sqrt_rgb(stamp, noise_sigma)
    raise ValueError(f"unknown scaling {scaling}")


def _block_mean(cube: np.ndarray, factor: int) -> np.ndarray:
    if factor <= 1:
        return cube
    s = (cube.shape[0] // factor) * factor
    c = cube[:s, :s]
    return c.reshape(s // factor, factor, s // factor, factor, -1).mean(axis=(1, 3))


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- environment
def _environment_png(path: Path, members, ra: float, dec: float) -> None:
    """Histogram of members' redshifts within 100" (z up to 4 and up to 1), or their colour-magnitude diagram."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 2.4), dpi=80)
    FigureCanvasAgg(fig)
    near = None
    if members is not None and len(members):
        mra, mdec = np.asarray(members["ra"], float), np.asarray(members["dec"], float)
        d = np.hypot((mra - ra) * np.cos(np.radians(dec)), mdec - dec) * 3600.0
        near = members[d <= ENVIRONMENT_RADIUS_ARCSEC]
    cols = set(near.colnames) if near is not None else set()
    if near is not None and "z" in cols:
        z = np.asarray(near["z"], float)
        z = z[np.isfinite(z)]
        for k, zmax in enumerate((4.0, 1.0)):
            ax = fig.add_subplot(1, 2, k + 1)
            ax.hist(z, bins=np.linspace(0, zmax, 41), color="tab:blue")
            ax.set_xlabel("z")
            ax.set_title(f"{len(z)} within {ENVIRONMENT_RADIUS_ARCSEC:g}\"" if k == 0 else "z < 1", fontsize=8)
            ax.tick_params(labelsize=7)
    elif near is not None and len([c for c in cols if c.startswith("mag_")]) >= 2:
        mags = sorted(c for c in cols if c.startswith("mag_"))
        blue, red = mags[0], mags[-1]
        ax = fig.add_subplot(1, 1, 1)
        ax.scatter(np.asarray(near[red], float), np.asarray(near[blue], float) - np.asarray(near[red], float), s=4)
        ax.set_xlabel(red)
        ax.set_ylabel(f"{blue} - {red}")
        ax.set_title(f"colour-magnitude, {len(near)} within {ENVIRONMENT_RADIUS_ARCSEC:g}\"", fontsize=8)
    else:
        fig.text(0.5, 0.5, "no redshifts or magnitudes of the surroundings", ha="center", va="center")
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    _save_png(path, image)


# ---------------------------------------------------------------------------------------------- rendering
class StampRenderer:
    """Render and cache the images of candidates of one inspection (thread-safe; one field opened lazily)."""

    def __init__(self, folder: Path, field_dir: Path, bands, noise_sigma, stretch_sigma: float = 10.0,
                 q: float = 8.0):
        self.cache = Path(folder).resolve() / "cache"
        self.field_dir = Path(field_dir)
        self.bands = list(bands)
        self.noise = np.asarray(noise_sigma, float)
        self.stretch_sigma, self.q = stretch_sigma, q
        self._images = None
        self._members = None
        self._open_lock = threading.Lock()
        self._cut_lock = threading.Lock()

    def _field(self):
        with self._open_lock:
            if self._images is None:
                from lenssearch.search.inputs import FieldImages

                self._images = FieldImages.from_field_dir(self.field_dir, self.bands)
                members = self.field_dir / "members.ecsv"
                if members.is_file():
                    from astropy.table import Table

                    t = Table.read(members, format="ascii.ecsv")
                    lower = {c.lower(): c for c in t.colnames}
                    if "ra" in lower and "dec" in lower:
                        t.rename_columns([lower["ra"], lower["dec"]], ["ra", "dec"])
                        self._members = t
            return self._images

    def close(self) -> None:
        with self._open_lock:
            if self._images is not None:
                self._images.close()
                self._images = None

    def path(self, candidate_id: int, kind: str) -> Path:
        """The cached file of an image kind (the kind is checked against :data:`KIND_RE`)."""
        if not valid_kind(kind):
            raise ValueError(f"unknown image kind '{kind}'")
        return self.cache / str(int(candidate_id)) / f"{kind}.png"

    def ensure(self, candidate_id: int, ra: float, dec: float) -> Path:
        """Render every image of a candidate unless cached; returns its cache folder."""
        folder = self.cache / str(int(candidate_id))
        done = folder / ".complete"
        if done.exists():
            return folder
        key = (str(self.cache), int(candidate_id))
        with _locks_guard:
            lock = _locks.setdefault(key, threading.Lock())
        with lock:
            if done.exists():
                return folder
            folder.mkdir(parents=True, exist_ok=True)
            images = self._field()
            x, y = images.world_to_pixel(np.array([ra]), np.array([dec]))
            pixel = images.pixel_scale_arcsec
            for size_name, arcsec in SIZES.items():
                npix = max(int(round(arcsec / pixel)), 8)
                with self._cut_lock:  # the cut's buffers are per call, but the memory maps are shared
                    cube, _ = images.cut(x, y, npix)
                cube = cube[0]
                factor = int(np.ceil(npix / MAX_PIXELS))
                # block means lower the noise by the factor: the scalings are in units of the noise
                small = _block_mean(cube, factor)
                noise = self.noise / factor
                for scaling in SCALINGS:
                    _save_png(folder / f"{size_name}_{scaling}.png", rgb(small, noise, scaling, self.stretch_sigma, self.q))
                if size_name == "stamp10":
                    for b in range(cube.shape[-1]):
                        _save_png(folder / f"band{b}.png", band_grey(cube[..., b], self.noise[b]))
            _environment_png(folder / "hist.png", self._members, ra, dec)
            done.touch()
        return folder
