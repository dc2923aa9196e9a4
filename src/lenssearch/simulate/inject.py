"""The ``simulate`` stage: mock galaxy-galaxy strong lenses injected at secondary caustics.

Angora et al. (2023), Sect. 3.1: for each mock

1. a source is drawn from the population of :mod:`lenssearch.simulate.sources` (F814W magnitude, redshift with
   ``z_s >= z_cluster + dz_min``, size, Sersic shape) with colours from :mod:`lenssearch.simulate.colours`;
2. a secondary critical line is drawn with probability proportional to ``theta_E`` in
   ``[theta_e_min, theta_e_max]`` (``field.critical_lines``) from the field's catalogue whose source redshift is
   nearest to ``z_s`` (:func:`lenssearch.lensing.critical.draw_secondary`); this picks the lens member;
3. the member's critical line and caustic are recomputed at the exact ``z_s`` on a local grid
   (:class:`lenssearch.simulate.local.LocalLens`); if the line does not exist or leaves the ``theta_E`` range at
   that redshift, the candidate is dropped and redrawn (counted in the metrics);
4. the source centre is drawn uniformly inside the caustic grown by ``buffer_re_fraction * R_e`` (and by
   ``buffer_theta_e_fraction * theta_E``, except for a share ``inner_caustic_fraction`` of the sources: the
   doubles/quads balance of HOLISMOKES' L6 ground truth, docs/architecture.md);
5. the lensed source is ray-traced on the 128 x 128 cutout centred on the member with ``supersampling^2``
   samples per pixel (surface brightness conserved), scaled to each band's flux (AB magnitude and zero point),
   convolved with the band's PSF and added to the field's cutout (:mod:`lenssearch.simulate.render`).

Per mock the metadata (``metadata.ecsv``) holds the field, member, ``theta_E`` at ``z_s``, the source's
magnitudes per band, ``R_e`` (kpc and arcsec), ``n``, ``q``, angle, its source-plane position, the total
magnification (lensed / intrinsic F814W flux before the PSF, summed over the cutout at the sub-pixel resolution
and over the local lens grid outside it), the number of images (point-source lens equation on the local grid,
images with ``|mu| >= image_min_abs_magnification``, and how many of them fall inside the cutout), the lens
magnitude and colour and the cutout centre. A candidate none of whose images falls inside the cutout is redrawn
(the paper's cutouts all contain at least one lensed image, Sect. 3.2). The lens parameters that a modeling network
learns (centre, ``theta_E``, mass ellipticity, external shear) are in ``truth.ecsv``, same ids and order
(:mod:`lenssearch.simulate.truth`).

Randomness: one generator per field, ``default_rng([base.seed, SIMULATE_STREAM, field index])``; every
candidate also draws its own placement seed, so the result does not depend on the order in which candidates are
processed (they are grouped by member to reuse the member's deflection field).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from lenssearch.errors import LensSearchError

#: Stream offset of the ``simulate`` stage in the seed sequence ``[base.seed, stream, ...]``.
SIMULATE_STREAM = 101

REJECTION_REASONS = ("no_critical_line_at_z_s", "theta_e_out_of_range_at_z_s", "placement_failed",
                     "no_image_in_cutout", "magnification_below_min", "peak_below_min", "lensed_snr_below_min",
                     "images_in_cutout_below_min")

METADATA_COLUMNS = (
    "id", "label", "field", "member_id", "line_id", "z_lens", "theta_e_arcsec", "theta_e_catalogue_arcsec",
    "z_s_catalogue", "z_s", "source_mag_F435W", "source_mag_F606W", "source_mag_F814W", "source_young_fraction",
    "source_re_kpc", "source_re_arcsec", "sersic_n", "axis_ratio", "position_angle_deg", "source_x_arcsec",
    "source_y_arcsec",
    "magnification", "magnification_in_cutout", "n_images", "n_images_in_cutout", "lens_mag_F814W",
    "lens_color_F606W_F814W", "lensed_snr_F435W", "lensed_snr_F606W", "lensed_snr_F814W", "lensed_snr",
    "arc_peak_sigma", "environment", "isolated_shear_gamma", "confuser", "confuser_mag_F814W", "confuser_x_arcsec",
    "confuser_y_arcsec", "cutout_ra", "cutout_dec", "cutout_row0", "cutout_col0",
)


#: Integer metadata columns (-1 where they do not apply).
INTEGER_COLUMNS = ("label", "line_id", "n_images", "n_images_in_cutout", "cutout_row0", "cutout_col0")


@dataclasses.dataclass
class Candidate:
    """A drawn (source, member) pair waiting to be placed."""

    index: int
    source: dict
    member_id: str
    line_id: int
    theta_e_catalogue: float
    z_catalogue: float
    seed: int
    isolated: bool = False  # the member's own mass and an external shear, without the cluster


@dataclasses.dataclass
class MemberLens:
    """Everything about one lens member that all its mocks share."""

    member_id: str
    row0: int
    col0: int
    centre_xy: tuple[float, float]
    centre_radec: tuple[float, float]
    alpha_x: np.ndarray  # sub-pixel grid of the renderer, float32
    alpha_y: np.ndarray
    grid: object  # LensGrid
    outside_cutout: np.ndarray  # lens-grid nodes outside the cutout square
    truth: object = None  # lenssearch.simulate.truth.MemberTruth


def lensed_snr(lensed: np.ndarray, noise_sigma) -> np.ndarray:
    """Per band, the optimal (matched-filter) signal-to-noise ratio of a lensed source in its cutout.

    ``sqrt(sum_pixels (s / sigma)^2)`` for the noiseless, PSF-convolved lensed source ``s`` (n x n x n_bands, e-/s)
    against white background noise of ``sigma`` per pixel and band: the S/N a fit of the known arc model would reach.
    It leaves out the lens galaxy's light and the source's own Poisson noise, so it is an upper bound on how well
    the arcs can be seen; a lensed source below S/N ~ 5 is invisible in that band. It makes the mocks' detectability
    a catalogue column (the evaluation bins completeness and AUC by it).
    """
    lensed = np.asarray(lensed, dtype=np.float64)
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    return np.sqrt(np.sum((lensed / sigma[None, None, :]) ** 2, axis=(0, 1)))


def arc_peak_sigma(lensed: np.ndarray, noise_sigma) -> float:
    """The brightest pixel of the noiseless, PSF-convolved lensed source in units of the background sigma, over
    the bands (the HOLISMOKES visibility criterion: Canameras et al. 2021, Sect. 2.2)."""
    sigma = np.asarray(noise_sigma, dtype=np.float64)
    return float(np.max(np.max(np.asarray(lensed, np.float64), axis=(0, 1)) / sigma))


def visibility_failure(meta: dict, visibility) -> str | None:
    """The first visibility cut (``simulate.visibility``) that a mock fails, or None if it is kept."""
    if meta["magnification"] < visibility.magnification_min:
        return "magnification_below_min"
    if meta["arc_peak_sigma"] < visibility.peak_sigma_min:
        return "peak_below_min"
    if meta["lensed_snr"] < visibility.lensed_snr_min:
        return "lensed_snr_below_min"
    if meta["n_images_in_cutout"] < visibility.images_in_cutout_min:
        return "images_in_cutout_below_min"
    return None


def field_generator(seed: int, stream: int, field_index: int) -> np.random.Generator:
    """The generator of one field in one stage."""
    return np.random.default_rng([int(seed), int(stream), int(field_index)])


def split_counts(total: int, n_parts: int) -> list[int]:
    """``total`` split as evenly as possible over ``n_parts`` (the first parts get the remainder)."""
    base, rest = divmod(int(total), int(n_parts))
    return [base + (1 if i < rest else 0) for i in range(n_parts)]


class _Lines:
    """A critical-line catalogue as :func:`lenssearch.lensing.critical.draw_secondary` reads it (columns by name,
    rows by index), without an astropy Table's cost: the isolated lenses' catalogue is made once per draw."""

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.columns[key]
        return {name: values[key] for name, values in self.columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))


class MockFactory:
    """Makes the mocks of one field (see the module docstring).

    Parameters
    ----------
    scene
        The :class:`lenssearch.simulate.scene.FieldScene` (with its lens).
    cfg
        The whole configuration.
    colours
        A :class:`lenssearch.simulate.colours.ColourModel` for ``base.bands``.
    """

    def __init__(self, scene, cfg, colours) -> None:
        from lenssearch.lensing.cosmology import Cosmology
        from lenssearch.simulate.render import Renderer
        from lenssearch.simulate.sources import SourcePopulation

        self.scene = scene
        self.cfg = cfg
        self.sim = cfg.simulate
        self.colours = colours
        self.cosmology = Cosmology.from_config(cfg.base.cosmology)
        self.population = SourcePopulation.from_config(self.sim.sources)
        self.z_lens = float(scene.field.z_lens)
        self.n = int(self.sim.cutout_pixels)
        self.theta_min = cfg.field.critical_lines.theta_e_min_arcsec
        self.theta_max = cfg.field.critical_lines.theta_e_max_arcsec
        if abs(scene.pixel_scale_arcsec - cfg.base.pixel_scale_arcsec) > 1e-9:
            raise LensSearchError(
                f"{scene.field.path}: pixel scale {scene.pixel_scale_arcsec} differs from base.pixel_scale_arcsec "
                f"{cfg.base.pixel_scale_arcsec}"
            )
        self.renderer = Renderer(self.n, scene.pixel_scale_arcsec, self.sim.supersampling, scene.psfs(),
                                 self.sim.psf_pad_pixels)
        self.exclude_centres = scene.cluster_centres()
        sigma = scene.field.noise_sigma
        self.noise_sigma = np.array([float(sigma[b]) for b in scene.bands])
        self._valid: set[str] | None = None
        self._isolated = None
        self.catalogues = self._catalogues()

    # ------------------------------------------------------------------------------------------ catalogues
    def _catalogues(self) -> dict[float, object]:
        from astropy.table import Table

        paths = self.scene.field.critical_line_paths
        if not paths:
            raise LensSearchError(f"{self.scene.field.path}: no critical_lines_zs<z>.ecsv catalogue in field "
                                  f"'{self.scene.name}'")
        valid = self.valid_members()
        out = {}
        for z_s, path in paths.items():
            try:
                table = Table.read(path, format="ascii.ecsv")
            except Exception as exc:  # astropy raises many types for malformed ECSV
                raise LensSearchError(f"{path}: not a readable critical-line catalogue ({exc})") from None
            for col in ("member_id", "theta_e_arcsec"):
                if col not in table.colnames:
                    raise LensSearchError(f"{path}: missing column '{col}' (have {table.colnames})")
            if "line_id" not in table.colnames:
                table["line_id"] = np.arange(len(table))
            table["member_id"] = np.array([str(v) for v in table["member_id"]], dtype=str)
            theta = np.asarray(table["theta_e_arcsec"], float)
            keep = (np.isin(table["member_id"], list(valid)) & (theta > self.theta_min) & (theta < self.theta_max))
            if keep.any():
                out[float(z_s)] = table[keep]
        if not out:
            raise LensSearchError(
                f"{self.scene.field.path}: no secondary critical line with {self.theta_min} < theta_E < "
                f"{self.theta_max}\" around a member whose cutout is complete"
            )
        return out

    def valid_members(self) -> set[str]:
        """Members whose cutout (with the renderer's padding) lies inside the frame with full coverage."""
        if self._valid is not None:
            return self._valid
        out = set()
        m = self.scene.members
        for mid, col, row in zip(m["member_id"], m["pix_col"], m["pix_row"]):
            r0, c0 = self.scene.window(col, row, self.n)
            if self.scene.window_problem(r0, c0, self.n) is None:
                out.add(str(mid))
        self._valid = out
        return out

    # ------------------------------------------------------------------------------------------ drawing
    def draw_candidates(self, rng: np.random.Generator, n: int, start_index: int) -> list[Candidate]:
        """Draw ``n`` sources and their lens members (in a fixed order of draws)."""
        from lenssearch.lensing.critical import draw_secondary

        sources = self.population.sample(rng, self.z_lens, self.cosmology.kpc_per_arcsec_array, size=n)
        columns = {c: np.asarray(sources[c], dtype=float) for c in sources.colnames}
        efficiency = (self.cosmology.dds_over_ds_array(self.z_lens, columns["z_s"])
                      if self.sim.isolated_fraction > 0 else None)
        z_bins = np.array(sorted(self.catalogues))
        out = []
        for k in range(n):
            src = {c: float(v[k]) for c, v in columns.items()}
            zb = float(z_bins[np.argmin(np.abs(z_bins - src["z_s"]))])
            isolated = bool(rng.random() < self.sim.isolated_fraction) if self.sim.isolated_fraction > 0 else False
            # an isolated lens is drawn among the members by its own (field SIE) theta_E at the source redshift
            table = self.isolated_catalogue(efficiency[k]) if isolated else self.catalogues[zb]
            row = draw_secondary(table, rng, self.theta_min, self.theta_max, weighting=self.sim.theta_e_weighting)
            seed = int(rng.integers(0, 2**63 - 1))
            out.append(Candidate(start_index + k, src, str(row["member_id"]), int(row["line_id"]),
                                 float(row["theta_e_arcsec"]), src["z_s"] if isolated else zb, seed, isolated))
        return out

    def isolated_catalogue(self, efficiency: float) -> "_Lines":
        """The valid members as isolated lenses: their field-SIE Einstein radius for a source of lensing efficiency
        ``efficiency`` (``D_ds / D_s``; ``line_id`` -1)."""
        from lenssearch.simulate.local import field_sie, member_component

        if self._isolated is None:
            if self.scene.model is None:
                raise LensSearchError(f"{self.scene.field.path}: simulate.isolated_fraction needs a field with a "
                                      "lens model")
            ids, theta = [], []
            valid = self.valid_members()
            for row in self.scene.members:
                mid = str(row["member_id"])
                if mid not in valid:
                    continue
                try:
                    comp = member_component(self.scene.model, (float(row["x_model"]), float(row["y_model"])))
                    sie = field_sie(comp, self.sim.isolated_sigma_scale)
                except LensSearchError:
                    continue
                ids.append(mid)
                theta.append(float(sie.params["theta_e_arcsec"]))
            self._isolated = (np.array(ids, dtype=str), np.array(theta, dtype=float))
        ids, theta = self._isolated
        return _Lines({"member_id": ids, "line_id": np.full(ids.size, -1), "theta_e_arcsec": theta * efficiency})

    # ------------------------------------------------------------------------------------------ lens
    def isolated_shear(self, member_id: str) -> tuple[float, float]:
        """The external shear ``(gamma, angle_deg)`` of a member made an isolated lens (one draw per member,
        from ``base.seed`` and its id: the same whatever the order of the draws)."""
        import hashlib

        key = int.from_bytes(hashlib.sha256(f"{self.cfg.base.seed}:{member_id}".encode()).digest()[:8], "little")
        rng = np.random.default_rng([key, SIMULATE_STREAM])
        lo, hi = self.sim.isolated_shear_range
        return float(rng.uniform(lo, hi)), float(rng.uniform(0.0, 180.0))

    def member_lens(self, member_id: str, isolated: bool = False) -> MemberLens:
        """The member's window, deflections on the renderer's sub-pixel grid, and its local lens grid.

        ``isolated``: the member's own mass with an external shear (:class:`~lenssearch.simulate.local.IsolatedLens`)
        instead of the member inside the cluster.
        """
        from lenssearch.simulate.local import IsolatedLens, LocalLens, field_sie, member_component
        from lenssearch.simulate.truth import member_truth

        row = self.scene.member_row(member_id)
        r0, c0 = self.scene.window(row["pix_col"], row["pix_row"], self.n)
        centre_xy, centre_radec = self.scene.window_centre(r0, c0, self.n)
        pix = self.scene.pixel_scale_arcsec
        centre = (float(row["x_model"]), float(row["y_model"]))
        cut_half = (self.n / 2 + self.sim.psf_pad_pixels + 1) * pix
        source = str(self.scene.field.path)
        if isolated:
            if self.scene.model is None:
                raise LensSearchError(f"{source}: simulate.isolated_fraction needs a field with a lens model")
            gamma, angle = self.isolated_shear(member_id)
            mass = field_sie(member_component(self.scene.model, centre, source=source),
                             self.sim.isolated_sigma_scale, source)
            cut_lens = grid_lens = IsolatedLens(centre, mass, gamma, angle, self.z_lens, self.cosmology)
            truth = member_truth(None, None, centre, centre_xy, mass, (gamma, angle))
        else:
            own = (member_component(self.scene.model, centre, source=source)
                   if self.scene.model is not None else None)
            truth = member_truth(self.scene.model, own, centre, centre_xy)
            # two local lenses of the same field: the cutout's sub-pixels need exact values only for the few
            # components near the cutout; the lens grid (critical line, images) covers a larger region
            cut_lens = LocalLens(centre, cut_half, self.scene.model, self.scene.deflection_map, source=source)
            grid_half = max(self.sim.lens_grid_radius_arcsec, cut_half)
            grid_lens = LocalLens(centre, grid_half, self.scene.model, self.scene.deflection_map,
                                  self.exclude_centres, source=source, required_half_size_arcsec=cut_half)
        ax, ay = cut_lens.deflection_on_grid(self.renderer.xs + centre_xy[0], self.renderer.ys + centre_xy[1])
        grid = grid_lens.grid(self.sim.lens_grid_radius_arcsec, self.sim.lens_grid_step_arcsec)
        half_cut = self.n / 2 * pix
        outside = (np.abs(grid.xx - centre_xy[0]) > half_cut) | (np.abs(grid.yy - centre_xy[1]) > half_cut)
        return MemberLens(member_id, r0, c0, centre_xy, centre_radec, ax.astype(np.float32),
                          ay.astype(np.float32), grid, outside, truth)

    # ------------------------------------------------------------------------------------------ one mock
    def can_reach_peak(self, cand: Candidate) -> bool:
        """Whether any placement of the candidate's source could pass ``visibility.peak_sigma_min``.

        Lensing conserves surface brightness and a PSF of unit sum cannot raise a maximum, so no pixel of the
        lensed source exceeds the source's central surface brightness times the pixel area. A source whose bound
        is below the cut fails it wherever it is placed: it is rejected before its member's lens is computed
        (an exact test, not an approximation: the kept mocks are the same).
        """
        from lenssearch.simulate.render import SersicSource, flux_from_ab

        cut = self.sim.visibility.peak_sigma_min
        if not cut > 0:
            return True
        src = cand.source
        mags = self.colours.magnitudes(src["mag_F814W"], src["z_s"], src.get("young_fraction"))
        fluxes = np.array([float(flux_from_ab(mags[b], zp)) for b, zp in zip(self.scene.bands, self.scene.zeropoints)])
        unit = SersicSource(0.0, 0.0, re_arcsec=src["re_arcsec"], sersic_n=src["sersic_n"],
                            axis_ratio=src["axis_ratio"], angle_deg=src["position_angle_deg"])
        central = unit.amplitude_for_flux(1.0) * np.exp(unit.bn) * self.scene.pixel_scale_arcsec**2
        return bool(np.max(fluxes * central / self.noise_sigma) >= cut)

    def make(self, cand: Candidate, ml: MemberLens):
        """Render one mock: ``(cutout, metadata dict)`` or ``(None, rejection reason)``."""
        from lenssearch.simulate.local import count_images, sample_in_caustic
        from lenssearch.simulate.render import SersicSource, flux_from_ab, sersic_sum

        src = cand.source
        z_s = src["z_s"]
        mags = self.colours.magnitudes(src["mag_F814W"], z_s, src.get("young_fraction"))
        fluxes = [float(flux_from_ab(mags[b], zp)) for b, zp in zip(self.scene.bands, self.scene.zeropoints)]
        shape = dict(re_arcsec=src["re_arcsec"], sersic_n=src["sersic_n"], axis_ratio=src["axis_ratio"],
                     angle_deg=src["position_angle_deg"])
        if not self.can_reach_peak(cand):
            return None, "peak_below_min"
        line = ml.grid.critical_line(z_s)
        if line is None:
            return None, "no_critical_line_at_z_s"
        if not self.theta_min < line.theta_e_arcsec < self.theta_max:
            return None, "theta_e_out_of_range_at_z_s"
        rng = np.random.default_rng(cand.seed)
        buffer = self.sim.buffer_re_fraction * src["re_arcsec"]
        # a share of the sources inside the caustic itself (quads, cusps, rings), the rest anywhere in the grown
        # region (mostly doubles); one draw more only when the share is set, so other variants stay byte for byte
        inner = self.sim.inner_caustic_fraction > 0 and rng.random() < self.sim.inner_caustic_fraction
        if not inner:
            buffer += self.sim.buffer_theta_e_fraction * line.theta_e_arcsec
        pos = sample_in_caustic(rng, line.caustic_x, line.caustic_y, buffer)
        if pos is None:
            return None, "placement_failed"
        xc, yc = ml.centre_xy
        grid = ml.grid
        bx, by = grid.source_positions(z_s)
        images = count_images(bx, by, grid.x_axis, grid.y_axis, pos[0], pos[1], grid.magnification(z_s),
                              self.sim.image_min_abs_magnification)
        half = self.n / 2 * self.scene.pixel_scale_arcsec
        n_in_cutout = int(np.sum((np.abs(images[0] - xc) < half) & (np.abs(images[1] - yc) < half)))
        if n_in_cutout == 0:
            # e.g. a source in the buffer whose only image the cluster throws arcseconds away: no GGSL here
            return None, "no_image_in_cutout"
        if n_in_cutout < self.sim.visibility.images_in_cutout_min:
            # the same cut as visibility_failure's, before the render: the kept mocks are the same
            return None, "images_in_cutout_below_min"

        source_rel = SersicSource(pos[0] - xc, pos[1] - yc, **shape)
        f = self.cosmology.dds_over_ds(self.z_lens, z_s)
        injected, unit = self.renderer.render(source_rel, ml.alpha_x, ml.alpha_y, f, fluxes)
        cutout = self.scene.cutout(ml.row0, ml.col0, self.n) + injected

        # magnification: sub-pixel render inside the cutout + the lens grid outside it
        mu_in = float(self.renderer.crop(unit).sum())
        source_abs = SersicSource(pos[0], pos[1], **shape)
        mu_out = sersic_sum(source_abs, bx, by, ml.outside_cutout) * source_abs.amplitude_for_flux(1.0) * grid.step**2
        member = self.scene.member_row(cand.member_id)
        lens_mag = float(member["mag_F814W"]) if "mag_F814W" in member.colnames else np.nan
        lens_col = (float(member["mag_F606W"]) - lens_mag) if "mag_F606W" in member.colnames else np.nan
        snr = lensed_snr(injected, self.noise_sigma)
        gamma = self.isolated_shear(cand.member_id)[0] if cand.isolated else np.nan
        meta = {
            "confuser": "lens", "environment": "isolated" if cand.isolated else "cluster",
            "isolated_shear_gamma": gamma,
            "member_id": cand.member_id, "line_id": cand.line_id, "z_lens": self.z_lens,
            "theta_e_arcsec": line.theta_e_arcsec, "theta_e_catalogue_arcsec": cand.theta_e_catalogue,
            "z_s_catalogue": cand.z_catalogue, "z_s": z_s,
            **{f"source_mag_{b}": float(mags[b]) for b in ("F435W", "F606W", "F814W") if b in mags},
            "source_young_fraction": float(src.get("young_fraction", 0.0)),
            "source_re_kpc": src["re_kpc"], "source_re_arcsec": src["re_arcsec"], "sersic_n": src["sersic_n"],
            "axis_ratio": src["axis_ratio"], "position_angle_deg": src["position_angle_deg"],
            "source_x_arcsec": pos[0], "source_y_arcsec": pos[1],
            "magnification": mu_in + mu_out, "magnification_in_cutout": mu_in, "n_images": int(len(images[0])),
            "n_images_in_cutout": n_in_cutout,
            "lens_mag_F814W": lens_mag, "lens_color_F606W_F814W": lens_col,
            **{f"lensed_snr_{b}": float(v) for b, v in zip(self.scene.bands, snr)},
            "lensed_snr": float(np.sqrt(np.sum(snr**2))),
            "arc_peak_sigma": arc_peak_sigma(injected, self.noise_sigma),
            "cutout_ra": ml.centre_radec[0], "cutout_dec": ml.centre_radec[1],
            "cutout_row0": ml.row0, "cutout_col0": ml.col0,
            "truth": ml.truth.at(line.theta_e_arcsec, f),  # truth.ecsv (simulate/truth.py), not metadata.ecsv
        }
        failed = visibility_failure(meta, self.sim.visibility)
        if failed is not None:
            return None, failed
        return cutout, meta


def simulate_field(scene, cfg, n_mocks: int, field_index: int, colours, progress: bool = True, position: int = 0,
                   id_prefix: str = ""):
    """All mocks of one field: ``(cutouts (n, 128, 128, n_bands), list of metadata dicts, rejection counts)``."""
    from tqdm import tqdm

    factory = MockFactory(scene, cfg, colours)
    rng = field_generator(cfg.base.seed, SIMULATE_STREAM, field_index)
    rejected = {r: 0 for r in REJECTION_REASONS}
    lenses: dict[tuple[str, bool], MemberLens] = {}
    results: list[tuple[int, np.ndarray, dict]] = []
    next_index = 0
    bar = tqdm(total=n_mocks, desc=f"simulate {scene.name}", unit="mock", disable=not progress, leave=False,
               position=position)
    for _ in range(cfg.simulate.max_rounds):
        need = n_mocks - len(results)
        if need <= 0:
            break
        # draw as many candidates as the acceptance so far says are needed (a visibility cut keeps a fraction)
        acceptance = max(len(results), 1) / next_index if next_index else 1.0
        n_draw = int(min(max(need, np.ceil(1.1 * need / max(acceptance, 1e-3))),
                         cfg.simulate.visibility.draws_per_round_max))
        cands = factory.draw_candidates(rng, n_draw, next_index)
        next_index += n_draw
        kept_before = len(results)
        order: dict[tuple[str, bool], list[Candidate]] = {}
        for c in cands:
            if not factory.can_reach_peak(c):
                rejected["peak_below_min"] += 1
                continue
            order.setdefault((c.member_id, c.isolated), []).append(c)
        round_results = []
        for key, group in order.items():
            if key not in lenses:  # a member's lens is computed once per field, whatever the rounds
                lenses[key] = factory.member_lens(*key)
            ml = lenses[key]
            for c in group:
                cutout, meta = factory.make(c, ml)
                if cutout is None:
                    rejected[meta] += 1
                    continue
                round_results.append((c.index, cutout, meta))
                if bar.n < n_mocks:
                    bar.update(1)
        # keep the first ``need`` of this round in draw order: the result does not depend on processing order
        results.extend(sorted(round_results, key=lambda t: t[0])[: n_mocks - kept_before])
        bar.n = len(results)
    bar.close()
    if len(results) < n_mocks:
        raise LensSearchError(
            f"field '{scene.name}': placed only {len(results)} of {n_mocks} mocks in {cfg.simulate.max_rounds} "
            f"rounds (rejections: {rejected})"
        )
    rejected["n_drawn"] = next_index
    for k, (_, _, meta) in enumerate(results):
        meta["id"] = f"{id_prefix}mock-{scene.name}-{k:05d}"
        meta["field"] = scene.name
        meta["label"] = 1
    cutouts = np.stack([r[1] for r in results]) if results else np.zeros((0, factory.n, factory.n, len(scene.bands)),
                                                                        np.float32)
    return cutouts, [r[2] for r in results], rejected


def metadata_table(rows: list[dict]):
    """The metadata rows as an astropy Table with the columns of :data:`METADATA_COLUMNS`.

    Absent values are NaN (floats), -1 (integers: ``line_id``, ``n_images`` of a negative) or ``""``.
    """
    from astropy.table import Table

    cols = {}
    for name in METADATA_COLUMNS:
        if name in ("id", "field", "member_id", "confuser", "environment"):
            cols[name] = np.array([str(r.get(name, "")) for r in rows], dtype=str)
        elif name in INTEGER_COLUMNS:
            cols[name] = np.array([r.get(name, -1) for r in rows], dtype=np.int64)
        else:
            cols[name] = np.array([r.get(name, np.nan) for r in rows], dtype=np.float64)
    table = Table(cols)
    units = {"theta_e_arcsec": "arcsec", "theta_e_catalogue_arcsec": "arcsec", "source_re_kpc": "kpc",
             "source_re_arcsec": "arcsec", "position_angle_deg": "deg", "source_x_arcsec": "arcsec",
             "source_y_arcsec": "arcsec", "cutout_ra": "deg", "cutout_dec": "deg", "confuser_x_arcsec": "arcsec",
             "confuser_y_arcsec": "arcsec", "confuser_mag_F814W": "mag"}
    for name, unit in units.items():
        table[name].unit = unit
    return table


#: What the field workers need (inherited by forked processes: the configuration holds read-only mappings that do
#: not pickle, the fields' images are large).
_JOBS: dict = {}


def _simulate_job(k: int):
    from lenssearch.simulate.scene import FieldScene

    i, field, n = _JOBS["jobs"][k]
    cfg = _JOBS["cfg"]
    if n == 0:
        return field.name, None, [], {}
    scene = FieldScene(field, tuple(cfg.base.bands), with_lens=True)
    cut, rows, rej = simulate_field(scene, cfg, n, i, _JOBS["colours"], _JOBS["progress"], position=k,
                                    id_prefix=_JOBS["id_prefix"])
    return scene.name, cut, rows, rej


def _map_fields(n_jobs: int):
    """The fields' mocks, in field order: one process per field up to the CPU count (each field has its own seeded
    generator, so the result is the same whatever the number of processes)."""
    import multiprocessing
    import os

    workers = min(n_jobs, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_simulate_job(k) for k in range(n_jobs)]
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # a worker that dies (killed, out of memory) breaks the pool: an error, never a wait for it; an interrupted
    # parent stops its workers at once
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_signals)
    try:
        return list(pool.map(_simulate_job, range(n_jobs)))
    except BrokenProcessPool:
        raise LensSearchError("simulate: a field's worker process died (killed or out of memory)") from None
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_signals() -> None:
    """A field worker ends quietly when its parent stops it (the CLI's SIGTERM handler is for the parent)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_simulate(cfg, fields_dir: str | Path, out_dir: str | Path, reports_dir: str | Path | None = None,
                 progress: bool = True, variant: str = "") -> dict:
    """The ``simulate`` stage: write ``out_dir`` (a cutout set, :mod:`lenssearch.simulate.store`) and reports.

    ``variant``: the KB variant's name (``cfg`` already has it merged in); it prefixes the ids (``<variant>-mock-...``)
    so that cutouts of different variants never share an id.

    Returns the metrics (also written to ``reports_dir/metrics.json`` with the figures).
    """
    from lenssearch.fields.layout import list_fields
    from lenssearch.simulate.colours import ColourModel
    from lenssearch.simulate.scene import check_fields
    from lenssearch.simulate.store import write_cutout_set
    from lenssearch.simulate.truth import TRUTH_FILE, truth_table

    t0 = time.perf_counter()
    fields = list_fields(fields_dir)
    check_fields(fields, str(fields_dir))
    bands = tuple(cfg.base.bands)
    colours = ColourModel.for_sources(bands, cfg.simulate.sources)
    counts = split_counts(cfg.simulate.n_mocks, len(fields))
    all_cutouts, all_rows, rejected, zeropoints = [], [], {}, {}
    jobs = [(i, field, n) for i, (field, n) in enumerate(zip(fields, counts))]
    for i, field, n in jobs:
        zeropoints[field.name] = {b: float(field.zeropoints_ab[b]) for b in bands}
    _JOBS.update(cfg=cfg, jobs=jobs, colours=colours, progress=progress, id_prefix=f"{variant}-" if variant else "")
    try:
        for name, cut, rows, rej in _map_fields(len(jobs)):
            if cut is None:
                continue
            all_cutouts.append(cut)
            all_rows.extend(rows)
            rejected[name] = rej
    finally:
        _JOBS.clear()
    cutouts = np.concatenate(all_cutouts) if all_cutouts else np.zeros((0, 1, 1, len(bands)), np.float32)
    table = metadata_table(all_rows)
    table.meta["stage"] = "simulate"
    table.meta["seed"] = int(cfg.base.seed)
    truth = truth_table([{"id": r["id"], "environment": r["environment"], **r["truth"]} for r in all_rows])
    write_cutout_set(out_dir, cutouts, table, bands=bands, pixel_scale_arcsec=cfg.base.pixel_scale_arcsec,
                     kind="mock", seed=cfg.base.seed, zeropoints_ab=zeropoints,
                     extra_files={TRUTH_FILE: lambda path: truth.write(path, format="ascii.ecsv")})
    metrics = simulate_metrics(table, rejected)
    if reports_dir is not None:
        from lenssearch.simulate.figures import population_figures

        write_metrics(Path(reports_dir) / "metrics.json", metrics)
        population_figures(cfg, reports_dir, table)
    if progress:
        print(f"simulate: {len(table)} mocks from {len(fields)} fields in {time.perf_counter() - t0:.1f} s")
    return metrics


def simulate_metrics(table, rejected: dict) -> dict:
    """Summary numbers of the mocks (deterministic: no timings)."""
    def stats(col):
        v = np.asarray(table[col], float)
        v = v[np.isfinite(v)]
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())} if v.size else None

    n = len(table)
    return {
        "n_mocks": n,
        "per_field": {str(f): int(np.sum(table["field"] == f)) for f in sorted(set(table["field"]))},
        "rejected": rejected,
        "theta_e_arcsec": stats("theta_e_arcsec"),
        "z_s": stats("z_s"),
        "source_mag_F814W": stats("source_mag_F814W"),
        "magnification": stats("magnification"),
        "fraction_multiple_images": float(np.mean(np.asarray(table["n_images"]) >= 2)) if n else None,
        "fraction_doubles_in_cutout": float(np.mean(np.asarray(table["n_images_in_cutout"]) == 2)) if n else None,
        "fraction_quads_in_cutout": float(np.mean(np.asarray(table["n_images_in_cutout"]) >= 4)) if n else None,
        "fraction_mag_gt_28": float(np.mean(np.asarray(table["source_mag_F814W"]) > 28)) if n else None,
        "fraction_theta_e_lt_0p5": float(np.mean(np.asarray(table["theta_e_arcsec"]) < 0.5)) if n else None,
    }


def write_metrics(path: str | Path, metrics: dict) -> None:
    """Write a metrics JSON atomically (sorted keys: deterministic bytes)."""
    from lenssearch.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
