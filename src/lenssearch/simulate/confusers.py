"""Hard negatives: non-lenses that look like lenses, injected into the same member cutouts as the mocks.

The false positives of lens searches are galaxies with blue structure near a red galaxy (Angora et al. 2023,
Sect. 4.3: blue discs with spiral arms; HOLISMOKES XVI, Sect. 3: spirals, groups, rings, random galaxies). A
network that only ever sees plain early-type galaxies as non-lenses learns "blue light near a red galaxy = lens"
rather than the geometry of arcs. Each kind below is rendered with the mocks' own renderer
(:class:`lenssearch.simulate.render.Renderer`: same sub-pixel sampling, same PSF per band, same padding) and added to
a member's cutout of the same field image, so its noise, depth and PSF are those of the lenses: no shortcut.

Kinds (``negatives.hard_negatives`` gives the fraction of the non-lenses of each; the rest are plain cutouts):

``blue_companion``
    ``companions`` (a count range) unlensed star-forming galaxies of the mocks' source population (Sersic, their
    redshift's colours from the star-forming SED), each at ``neighbour_radius_arcsec`` from the centre, as bright
    as the variant's lensed arcs (their F814W magnitude inside the cutout) when ``companion_mag_from_arcs``: a
    galaxy with a star-forming neighbour, or in a group of them (HOLISMOKES XVI, Sect. 3: groups);
``spiral``
    a disc galaxy centred on an empty position of the field (not a member: :data:`SKY_KINDS`): a red bulge
    (Sersic n = 4, the colours of a member) and a blue exponential disc (star-forming colours, below) with
    ``spiral_arms`` logarithmic arms
    (pitch ``spiral_pitch_deg``), bulge-to-total ``bulge_to_total``, as bright as a mock host (a member drawn as
    the lenses' hosts are, ``disc_mag_offset`` from its magnitude);
``edge_on``
    the same disc galaxy seen edge-on (disc axis ratio ``edge_on_axis_ratio``), on an empty position;
``ring``
    a ring (Gaussian radial profile of radius ``ring_radius_arcsec``, elliptical, uneven in brightness) with
    ``ring_knots`` star-forming knots: a collisional or resonance ring, blue (star-forming colours, below);
``pair``
    a second early-type galaxy (Sersic n 3-5, the host's colours) at ``neighbour_radius_arcsec``: pairs and
    mergers;
``star``
    a point source (the band's PSF) of ``star_mag_range`` with a stellar colour at ``neighbour_radius_arcsec``.

Star-forming colours of discs and rings: the star-forming SED at the cluster redshift (one colour per field) plus a
young burst with a flat ``f_nu`` spectrum (AB colours 0) that carries a fraction ``young_fraction`` of the F814W
light, so colours range from the template's (F435W - F814W ~1.1 at z = 0.35) to 0. Real discs and rings span that
range: the rings of collisional ring galaxies are young starbursts, bluer than any disc (Appleton & Struck-Marcell
1996; Romano, Mayya & Vorobyov 2008). With the template's colour alone, every ring and disc of a field had the same
colour, which the three-band networks learned as "a ring of that colour is no lens, a bluer one is"
(docs/architecture.md, "Hard negatives").

Every draw comes from the generator passed in (seeded per field by the ``negatives`` stage).
"""

from __future__ import annotations

import numpy as np

from lenssearch.errors import LensSearchError

CONFUSER_KINDS = ("blue_companion", "spiral", "edge_on", "ring", "pair", "star")
#: Kinds drawn as galaxies of their own at an empty position of the field (the others are added to a member).
SKY_KINDS = ("spiral", "edge_on")


def _uniform(rng, bounds) -> float:
    lo, hi = float(bounds[0]), float(bounds[1])
    return float(lo + (hi - lo) * rng.random())


def _polar_offset(rng, radius_bounds) -> tuple[float, float]:
    r = _uniform(rng, radius_bounds)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    return r * np.cos(phi), r * np.sin(phi)


class ConfuserRenderer:
    """Renders the confusers of one field on the mocks' sub-pixel grid and PSFs.

    Parameters
    ----------
    renderer
        The field's :class:`lenssearch.simulate.render.Renderer` (cutout size, pixel, supersampling, PSFs).
    bands, zeropoints
        Band order and AB zero points of the field's images.
    colours
        :class:`lenssearch.simulate.colours.ColourModel` (star-forming SED magnitudes at a redshift).
    population
        :class:`lenssearch.simulate.sources.SourcePopulation` of the mocks' sources.
    cfg
        The ``negatives.confusers`` section.
    z_lens, kpc_per_arcsec
        The cluster redshift and the cosmology's scale at an array of redshifts (``Cosmology.kpc_per_arcsec_array``).
    arc_mags
        F814W magnitudes of the variant's lensed arcs inside their cutouts (companions take these), or None.
    """

    def __init__(self, renderer, bands, zeropoints, colours, population, cfg, z_lens: float, kpc_per_arcsec,
                 arc_mags: np.ndarray | None = None) -> None:
        self.renderer = renderer
        self.bands = tuple(bands)
        self.zeropoints = np.asarray(zeropoints, float)
        self.colours = colours
        self.population = population
        self.cfg = cfg
        self.z_lens = float(z_lens)
        self.kpc_per_arcsec = kpc_per_arcsec
        self.arc_mags = None if arc_mags is None or len(arc_mags) == 0 else np.asarray(arc_mags, float)
        ss = renderer.supersampling
        self._x, self._y = np.meshgrid(renderer.xs, renderer.ys)
        self._ss = ss
        self._zero = np.zeros_like(self._x, dtype=np.float32)

    # ------------------------------------------------------------------------------------------ helpers
    def _fluxes(self, mags: dict) -> list[float]:
        return [float(10.0 ** (-0.4 * (mags[b] - zp))) for b, zp in zip(self.bands, self.zeropoints)]

    def _blue_mags(self, mag_f814w: float, z: float, young_fraction: float | None = None) -> dict:
        mags = self.colours.magnitudes(mag_f814w, z, young_fraction)
        return {b: float(mags[b]) for b in self.bands}

    def _star_forming_mags(self, rng, mag_f814w: float) -> dict:
        """A disc's or ring's magnitudes at the cluster redshift: the star-forming SED plus a young flat-``f_nu``
        burst holding a fraction ``young_fraction`` of the F814W light (see the module docstring)."""
        young = _uniform(rng, self.cfg.young_fraction)
        old = self._blue_mags(mag_f814w, self.z_lens)
        return {b: mag_f814w - 2.5 * np.log10((1.0 - young) * 10.0 ** (-0.4 * (m - mag_f814w)) + young)
                for b, m in old.items()}

    def _unit_image(self, surface: np.ndarray) -> np.ndarray:
        """Sub-pixel surface brightness -> padded pixel image of unit total flux."""
        n = self.renderer.n_padded
        ss = self._ss
        img = surface.reshape(n, ss, n, ss).mean(axis=(1, 3))
        total = img.sum()
        if not total > 0:
            raise LensSearchError("confuser: empty profile on the cutout grid")
        return img / total

    def _convolve(self, unit: np.ndarray, fluxes) -> np.ndarray:
        out = np.empty((self.renderer.n_pixels, self.renderer.n_pixels, len(fluxes)), dtype=np.float32)
        for k, flux in enumerate(fluxes):
            img = self.renderer.convolvers[k](unit) if self.renderer.convolvers is not None else unit
            out[..., k] = self.renderer.crop(img) * flux
        return out

    def _sersic(self, x0, y0, re, n, q, angle_deg, fluxes) -> np.ndarray:
        from lenssearch.simulate.render import SersicSource

        source = SersicSource(x0, y0, re_arcsec=re, sersic_n=n, axis_ratio=q, angle_deg=angle_deg)
        image, _ = self.renderer.render(source, self._zero, self._zero, 0.0, fluxes)
        return image

    def _elliptical_radius(self, x0, y0, q, angle_deg):
        a = np.deg2rad(angle_deg)
        dx, dy = self._x - x0, self._y - y0
        u = dx * np.cos(a) + dy * np.sin(a)
        v = -dx * np.sin(a) + dy * np.cos(a)
        return u, v / q

    # ------------------------------------------------------------------------------------------ kinds
    def blue_companion(self, rng, host) -> tuple[np.ndarray, dict]:
        image, mag, x0, y0 = self._one_companion(rng)
        low, high = self.cfg.companions
        # drawn after the first companion, and only when it can vary: [1, 1] keeps the earlier KBs byte for byte
        count = low if low == high else int(rng.integers(low, high + 1))
        for _ in range(count - 1):
            image = image + self._one_companion(rng)[0]
        return image, {"confuser_mag_F814W": mag, "confuser_x_arcsec": x0, "confuser_y_arcsec": y0}

    def _one_companion(self, rng) -> tuple[np.ndarray, float, float, float]:
        """One unlensed source of the mocks' population beside the host: image, F814W magnitude, position."""
        src = self.population.sample(rng, self.z_lens, self.kpc_per_arcsec, size=1)
        z = float(src["z_s"][0])
        young = float(src["young_fraction"][0]) if "young_fraction" in src.colnames else None
        mag = float(src["mag_F814W"][0])
        if self.cfg.companion_mag_from_arcs and self.arc_mags is not None:
            mag = float(rng.choice(self.arc_mags))
        x0, y0 = _polar_offset(rng, self.cfg.neighbour_radius_arcsec)
        image = self._sersic(x0, y0, float(src["re_arcsec"][0]), float(src["sersic_n"][0]),
                             float(src["axis_ratio"][0]), float(src["position_angle_deg"][0]),
                             self._fluxes(self._blue_mags(mag, z, young)))
        return image, mag, x0, y0

    def _bulge(self, rng, host, mag: float, re_disc: float) -> np.ndarray:
        """A red bulge (Sersic n = 4, the member ``host``'s colours) of F814W magnitude ``mag``."""
        mags = {b: mag + float(host[f"mag_{b}"]) - float(host["mag_F814W"]) if f"mag_{b}" in host.colnames else mag
                for b in self.bands}
        return self._sersic(0.0, 0.0, max(0.25 * re_disc, 0.06), 4.0, _uniform(rng, (0.7, 1.0)),
                            rng.uniform(0.0, 180.0), self._fluxes(mags))

    def _split(self, rng, total_mag: float) -> tuple[float, float]:
        bt = _uniform(rng, self.cfg.bulge_to_total)
        return total_mag - 2.5 * np.log10(bt), total_mag - 2.5 * np.log10(1.0 - bt)

    def spiral(self, rng, host) -> tuple[np.ndarray, dict]:
        c = self.cfg
        re = _uniform(rng, c.disc_re_arcsec)
        q = _uniform(rng, (0.5, 1.0))
        angle = rng.uniform(0.0, 180.0)
        arms = int(rng.integers(c.spiral_arms[0], c.spiral_arms[1] + 1))
        pitch = np.deg2rad(_uniform(rng, c.spiral_pitch_deg))
        amplitude = _uniform(rng, (0.5, 0.95))
        phase = rng.uniform(0.0, 2.0 * np.pi)
        u, v = self._elliptical_radius(0.0, 0.0, q, angle)
        r = np.hypot(u, v)
        phi = np.arctan2(v, u)
        h = re / 1.678  # exponential scale length of a Sersic n=1 profile of half-light radius re
        arm = 1.0 + amplitude * np.cos(arms * (phi - np.log(np.maximum(r, 1e-3) / h) / np.tan(pitch)) + phase)
        surface = np.exp(-r / h) * arm
        total = float(host["mag_F814W"]) + _uniform(rng, c.disc_mag_offset)
        bulge_mag, disc_mag = self._split(rng, total)
        image = self._convolve(self._unit_image(surface), self._fluxes(self._star_forming_mags(rng, disc_mag)))
        image += self._bulge(rng, host, bulge_mag, re)
        return image, {"confuser_mag_F814W": total, "confuser_x_arcsec": 0.0, "confuser_y_arcsec": 0.0}

    def edge_on(self, rng, host) -> tuple[np.ndarray, dict]:
        c = self.cfg
        re = _uniform(rng, c.disc_re_arcsec)
        total = float(host["mag_F814W"]) + _uniform(rng, c.disc_mag_offset)
        bulge_mag, disc_mag = self._split(rng, total)
        image = self._sersic(0.0, 0.0, re, 1.0, _uniform(rng, c.edge_on_axis_ratio), rng.uniform(0.0, 180.0),
                             self._fluxes(self._star_forming_mags(rng, disc_mag)))
        image += self._bulge(rng, host, bulge_mag, re)
        return image, {"confuser_mag_F814W": total, "confuser_x_arcsec": 0.0, "confuser_y_arcsec": 0.0}

    def ring(self, rng, host) -> tuple[np.ndarray, dict]:
        c = self.cfg
        radius = _uniform(rng, c.ring_radius_arcsec)
        width = radius * _uniform(rng, c.ring_width_fraction)
        q = _uniform(rng, (0.55, 1.0))
        angle = rng.uniform(0.0, 180.0)
        u, v = self._elliptical_radius(0.0, 0.0, q, angle)
        r = np.hypot(u, v)
        phi = np.arctan2(v, u)
        lopsided = 1.0 + _uniform(rng, (0.2, 0.8)) * np.cos(phi - rng.uniform(0.0, 2.0 * np.pi))
        surface = np.exp(-0.5 * ((r - radius) / width) ** 2) * lopsided
        surface /= surface.sum()
        n_knots = int(rng.integers(c.ring_knots[0], c.ring_knots[1] + 1))
        knot_fraction = _uniform(rng, (0.2, 0.5)) if n_knots else 0.0
        knots = np.zeros_like(surface)
        a = np.deg2rad(angle)
        for _ in range(n_knots):
            t = rng.uniform(0.0, 2.0 * np.pi)
            ku, kv = radius * np.cos(t), radius * q * np.sin(t)
            kx, ky = ku * np.cos(a) - kv * np.sin(a), ku * np.sin(a) + kv * np.cos(a)
            size = max(0.6 * width, 0.03)
            knots += rng.uniform(0.5, 1.5) * np.exp(-0.5 * ((self._x - kx) ** 2 + (self._y - ky) ** 2) / size**2)
        if n_knots:
            surface = (1.0 - knot_fraction) * surface + knot_fraction * knots / knots.sum()
        if self.cfg.companion_mag_from_arcs and self.arc_mags is not None:
            mag = float(rng.choice(self.arc_mags))
        else:
            mag = float(host["mag_F814W"]) + _uniform(rng, c.disc_mag_offset)
        image = self._convolve(self._unit_image(surface), self._fluxes(self._star_forming_mags(rng, mag)))
        return image, {"confuser_mag_F814W": mag, "confuser_x_arcsec": 0.0, "confuser_y_arcsec": 0.0}

    def pair(self, rng, host) -> tuple[np.ndarray, dict]:
        c = self.cfg
        offset = _uniform(rng, c.pair_mag_offset)
        mags = {b: float(host[f"mag_{b}"]) + offset if f"mag_{b}" in host.colnames else np.nan for b in self.bands}
        if not all(np.isfinite(list(mags.values()))):
            raise LensSearchError(f"confuser 'pair': member {host['member_id']} lacks magnitudes in {self.bands}")
        re = float(host["re_arcsec"]) * 10 ** (-0.2 * offset) if "re_arcsec" in host.colnames else 0.5
        x0, y0 = _polar_offset(rng, c.neighbour_radius_arcsec)
        image = self._sersic(x0, y0, max(re, 0.1), _uniform(rng, (3.0, 5.0)), _uniform(rng, (0.5, 1.0)),
                             rng.uniform(0.0, 180.0), self._fluxes(mags))
        return image, {"confuser_mag_F814W": mags.get("F814W", np.nan), "confuser_x_arcsec": x0,
                       "confuser_y_arcsec": y0}

    def star(self, rng, host) -> tuple[np.ndarray, dict]:
        c = self.cfg
        mag = _uniform(rng, c.star_mag_range)
        # stellar colours: F606W - F814W in [0.2, 1.4] (G to M dwarfs), F435W - F606W about 1.3x that
        c1 = _uniform(rng, (0.2, 1.4))
        mags = {"F814W": mag, "F606W": mag + c1, "F435W": mag + c1 + 1.3 * c1}
        x0, y0 = _polar_offset(rng, c.neighbour_radius_arcsec)
        n, ss = self.renderer.n_padded, self._ss
        unit = np.zeros((n, n))
        pix = self.renderer.pixel_scale_arcsec
        col = (x0 / pix) + self.renderer.pad_pixels + (self.renderer.n_pixels - 1) / 2.0
        row = (y0 / pix) + self.renderer.pad_pixels + (self.renderer.n_pixels - 1) / 2.0
        # bilinear split of the point source over the four nearest pixels
        c0, r0 = int(np.floor(col)), int(np.floor(row))
        fc, fr = col - c0, row - r0
        for dr, wr in ((0, 1 - fr), (1, fr)):
            for dc, wc in ((0, 1 - fc), (1, fc)):
                if 0 <= r0 + dr < n and 0 <= c0 + dc < n:
                    unit[r0 + dr, c0 + dc] += wr * wc
        del ss
        image = self._convolve(unit / unit.sum(), self._fluxes({b: mags.get(b, mag) for b in self.bands}))
        return image, {"confuser_mag_F814W": mag, "confuser_x_arcsec": x0, "confuser_y_arcsec": y0}

    def render(self, kind: str, rng, host) -> tuple[np.ndarray, dict]:
        """``(image to add (n, n, n_bands) e-/s, metadata)`` of one confuser of ``kind`` around ``host``."""
        if kind not in CONFUSER_KINDS:
            raise LensSearchError(f"unknown hard-negative kind '{kind}' (known: {', '.join(CONFUSER_KINDS)})")
        return getattr(self, kind)(rng, host)


def confuser_counts(n: int, fractions: dict) -> dict[str, int]:
    """How many of ``n`` non-lenses are of each kind (largest remainders; the rest are ``plain``)."""
    bad = sorted(set(fractions) - set(CONFUSER_KINDS))
    if bad:
        raise LensSearchError(f"negatives.hard_negatives: unknown kind(s) {bad} (known: {list(CONFUSER_KINDS)})")
    values = {k: float(v) for k, v in fractions.items()}
    if any(v < 0 for v in values.values()) or sum(values.values()) > 1.0 + 1e-9:
        raise LensSearchError(f"negatives.hard_negatives: fractions must be >= 0 and sum to <= 1, got {values}")
    exact = {k: n * v for k, v in values.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    rest = int(round(n * sum(values.values()))) - sum(counts.values())
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:max(rest, 0)]:
        counts[k] += 1
    counts["plain"] = n - sum(counts.values())
    return counts
