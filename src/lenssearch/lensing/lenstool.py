"""Read LensTool parameter files, multiple-image catalogues and member catalogues.

LensTool (Jullo et al. 2007, https://projets.lam.fr/projects/lenstool) describes a cluster mass model in a ``.par``
file made of blocks ``<name> [argument] ... end`` closed by ``fini``. This reader builds a
:class:`~lenssearch.lensing.model.LensModel` from the blocks that define the mass model and reads the rest only to
skip it:

- ``runmode``: ``reference 3 RA Dec`` (decimal degrees) or ``reference 1 hh:mm:ss dd:mm:ss`` gives the origin of
  the relative frame (LensTool ``r_runmode.c``);
- ``potentiel <name>``: ``profil 81`` (dPIE, :class:`~lenssearch.lensing.profiles.dpie.DPIE`), ``profil 14``
  (external shear) and ``profil 1`` with zero ellipticity (SIS, ``theta_E = 4 pi sigma^2 / c^2``); keys as
  LensTool's ``r_potentiel.c`` (``x_centre``, ``y_centre`` or ``x_centre_wcs``, ``y_centre_wcs``,
  ``ellipticite``/``ellipticity``/``gamma``, ``ellip_pot``, ``angle_pos``, ``core_radius[_kpc]``,
  ``cut_radius[_kpc]``, ``v_disp``, ``z_lens``). As in LensTool's ``set_lens.c``, a radius given in kpc takes
  precedence over the one in arcsec and is converted with the cosmology at ``z_lens``;
- ``potfile``: galaxy-scale dPIEs for the members of a catalogue (``filein 3 members.cat``) scaled with
  luminosity, following LensTool's ``set_potfile.c`` (``scale_pot``): with ``L/L* = 10^(-0.4 (mag - mag0))``,
  ``sigma = sigma* (L/L*)^(1/vdslope)``, ``r_cut = r_cut* (L/L*)^(2/slope)``, ``r_core = r_core* (L/L*)^(1/2)``
  (``slope`` and ``vdslope`` default to 4, i.e. ``r_cut ~ L^(1/2)`` and Faber-Jackson ``sigma ~ L^(1/4)``);
  ellipticity ``(a^2 - b^2)/(a^2 + b^2)`` and angle from the catalogue;
- ``cosmologie``: ``H0``, ``omegaM``, ``omegaX`` (defaults 70, 0.3, 0.7; flat LambdaCDM only; a file without the
  block says so in ``LensToolModel.notes``);
- ``image``: ``forme`` (the kind of fit), ``sigposArcsec`` and the ``z_m_limit idx family flag z ...`` lines that
  hold the optimised redshifts of families without spectroscopy (:func:`resolve_redshifts`);
- ``grille``: ``nlentille``, the number of potentials, checked against those defined;
- the header comment ``#Chi2pos: X`` of a ``best.par`` (LensTool's own chi2 of the image positions).

Potentials at several ``z_lens`` make a :class:`~lenssearch.lensing.model.MultiPlaneLensModel` (``planes="multi"``)
or, as LensTool 6 does, one plane at the first potential's redshift (``planes="single"``).

Every other block (``cline``, ``grande``, ``champ``, ``source``, ``limit`` ...) is skipped. Malformed input raises
:class:`lenssearch.errors.LensToolError` naming the file and the line; so does a file that ends without ``fini``
(cut at a block boundary) or defines fewer potentials than ``nlentille``.

Coordinates: LensTool's relative frame, ``x = -(RA - RA0) cos(Dec0) 3600``, ``y = (Dec - Dec0) 3600`` (arcsec,
``x`` to the West), see :func:`radec_to_xy` and :func:`xy_to_radec`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from lenssearch.errors import LensToolError
from lenssearch.lensing.cosmology import Cosmology
from lenssearch.lensing.model import LensComponent, LensModel
from lenssearch.lensing.profiles.dpie import PIA_C2

#: Keys that open a block at top level; met inside a block they mean that its ``end`` is missing.
_BLOCK_OPENERS_FORBIDDEN_INSIDE = {"potentiel", "potential", "potfile", "cosmologie", "cosmology", "runmode", "fini"}

#: LensTool's default ``slope`` and ``vdslope`` of a potfile (r_cut ~ L^(2/4), sigma ~ L^(1/4)).
POTFILE_DEFAULT_SLOPE = 4.0
POTFILE_DEFAULT_VDSLOPE = 4.0


# --------------------------------------------------------------------------------------------- coordinates
def radec_to_xy(ra_deg, dec_deg, ra0_deg: float, dec0_deg: float):
    """LensTool relative coordinates (arcsec): ``x = -(RA - RA0) cos(Dec0) 3600``, ``y = (Dec - Dec0) 3600``.

    ``RA - RA0`` is wrapped into [-180, 180) degrees. This is the linear convention of LensTool
    (``set_potfile.c``, ``r_potentiel.c``), not a gnomonic projection.
    """
    dra = (np.asarray(ra_deg, dtype=float) - ra0_deg + 180.0) % 360.0 - 180.0
    x = -dra * math.cos(math.radians(dec0_deg)) * 3600.0
    y = (np.asarray(dec_deg, dtype=float) - dec0_deg) * 3600.0
    return x, y


def xy_to_radec(x_arcsec, y_arcsec, ra0_deg: float, dec0_deg: float):
    """Inverse of :func:`radec_to_xy`: ``RA = RA0 - x / (3600 cos Dec0)``, ``Dec = Dec0 + y / 3600`` (degrees)."""
    ra = ra0_deg - np.asarray(x_arcsec, dtype=float) / (3600.0 * math.cos(math.radians(dec0_deg)))
    dec = dec0_deg + np.asarray(y_arcsec, dtype=float) / 3600.0
    return ra % 360.0, dec


# --------------------------------------------------------------------------------------------- tokenising
@dataclasses.dataclass
class _Entry:
    key: str
    values: list[str]
    line: int


@dataclasses.dataclass
class _Block:
    name: str
    argument: str
    line: int
    entries: list[_Entry]

    def get(self, key: str) -> _Entry | None:
        """The last entry with this key (LensTool keeps the last value read)."""
        found = None
        for entry in self.entries:
            if entry.key == key:
                found = entry
        return found


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _split_blocks(path: Path, text: str) -> list[_Block]:
    """Split a parameter file into blocks; raise LensToolError for a truncated block."""
    blocks: list[_Block] = []
    current: _Block | None = None
    number = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw)
        if not line:
            continue
        tokens = line.split()
        key = tokens[0].lower()
        if current is None:
            if key == "fini":
                return blocks
            if key == "end":
                raise LensToolError(f"{path}, line {number}: 'end' outside of any block")
            current = _Block(key, " ".join(tokens[1:]), number, [])
            continue
        if key == "end":
            blocks.append(current)
            current = None
            continue
        if key in _BLOCK_OPENERS_FORBIDDEN_INSIDE:
            raise LensToolError(
                f"{path}, line {number}: '{tokens[0]}' inside block '{current.name} {current.argument}'".rstrip()
                + f" opened at line {current.line}: missing 'end'"
            )
        current.entries.append(_Entry(key, tokens[1:], number))
    if current is not None:
        raise LensToolError(
            f"{path}, line {current.line}: block '{current.name} {current.argument}'".rstrip()
            + " is truncated: no 'end' before the end of the file"
        )
    if not blocks:
        raise LensToolError(f"{path}, line 1: no blocks and no 'fini' line: not a LensTool parameter file")
    last = blocks[-1]
    label = f"{last.name} {last.argument}".strip()
    raise LensToolError(
        f"{path}, line {number}: the file ends without 'fini' after block '{label}' (line {last.line}): it is "
        "truncated or incomplete"
    )


def _number(path: Path, entry: _Entry, index: int = 0, kind: type = float) -> Any:
    """Value ``index`` of an entry as a number, or LensToolError naming file, line and key."""
    if len(entry.values) <= index:
        raise LensToolError(
            f"{path}, line {entry.line}: key '{entry.key}' expects at least {index + 1} value(s), got "
            f"{len(entry.values)}"
        )
    token = entry.values[index]
    try:
        value = kind(token)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise LensToolError(f"{path}, line {entry.line}: key '{entry.key}' expects {expected}, got '{token}'") from None
    if kind is float and not math.isfinite(value):
        raise LensToolError(f"{path}, line {entry.line}: key '{entry.key}' must be finite, got '{token}'")
    return value


# --------------------------------------------------------------------------------------------- blocks
def _parse_reference(path: Path, block: _Block) -> tuple[int, tuple[float, float] | None]:
    entry = block.get("reference")
    if entry is None:
        return 0, None
    mode = _number(path, entry, 0, int)
    if mode == 0:
        return 0, None
    if mode == 3:
        return 3, (_number(path, entry, 1), _number(path, entry, 2))
    if mode == 1:
        if len(entry.values) < 3:
            raise LensToolError(f"{path}, line {entry.line}: 'reference 1' expects hh:mm:ss dd:mm:ss")
        try:
            hh, mm, ss = (float(v) for v in entry.values[1].split(":"))
            dd_text, nn, tt = entry.values[2].split(":")
            dd = float(dd_text)
            nn, tt = float(nn), float(tt)
        except ValueError:
            raise LensToolError(
                f"{path}, line {entry.line}: 'reference 1' expects hh:mm:ss dd:mm:ss, got "
                f"'{' '.join(entry.values[1:3])}'"
            ) from None
        ra = (hh + mm / 60.0 + ss / 3600.0) * 15.0
        sign = -1.0 if dd_text.strip().startswith("-") else 1.0
        dec = sign * (abs(dd) + nn / 60.0 + tt / 3600.0)
        return 3, (ra, dec)
    raise LensToolError(
        f"{path}, line {entry.line}: 'reference {mode}' is not supported (use 3 RA Dec in decimal degrees, "
        "or 1 hh:mm:ss dd:mm:ss)"
    )


def _parse_cosmology(path: Path, block: _Block | None) -> Cosmology:
    h0, om, ox = 70.0, 0.3, 0.7
    if block is not None:
        if (e := block.get("h0")) is not None:
            h0 = _number(path, e)
        if (e := block.get("omegam")) is not None:
            om = _number(path, e)
        if (e := block.get("omegax")) is not None:
            ox = _number(path, e)
        if (e := block.get("wx")) is not None and abs(_number(path, e) + 1.0) > 1e-9:
            raise LensToolError(f"{path}, line {e.line}: only a cosmological constant (wX = -1) is supported")
        if (e := block.get("wa")) is not None and abs(_number(path, e)) > 1e-9:
            raise LensToolError(f"{path}, line {e.line}: only a cosmological constant (wa = 0) is supported")
        if abs(om + ox - 1.0) > 1e-6:
            line = block.line
            raise LensToolError(
                f"{path}, line {line}: only flat cosmologies are supported, got omegaM + omegaX = {om + ox:g}"
            )
    try:
        return Cosmology(H0=h0, Om0=om)
    except Exception as exc:  # LensSearchError with the value
        raise LensToolError(f"{path}, line {block.line if block else 1}: {exc}") from None


def _potential_component(path: Path, block: _Block, cosmo: Cosmology, reference) -> tuple[LensComponent, float]:
    """One ``potentiel`` block as a LensComponent; returns it with the block's ``z_lens``."""
    where = f"{path}, line {block.line}: potentiel '{block.argument}'"

    def num(key: str, default: float | None = None, aliases: tuple[str, ...] = ()) -> float | None:
        entry = None
        for k in (key, *aliases):
            e = block.get(k)
            if e is not None and (entry is None or e.line > entry.line):
                entry = e
        if entry is None:
            return default
        return _number(path, entry)

    profil_entry = block.get("profil") or block.get("profile")
    if profil_entry is None:
        raise LensToolError(f"{where}: missing required key 'profil'")
    profil = _number(path, profil_entry, 0, int)
    z_lens = num("z_lens")
    if z_lens is None:
        raise LensToolError(f"{where}: missing required key 'z_lens'")
    if not z_lens > 0:
        raise LensToolError(f"{path}, line {block.get('z_lens').line}: z_lens must be positive, got {z_lens}")

    x = num("x_centre", 0.0)
    y = num("y_centre", 0.0)
    for key in ("x_centre_wcs", "y_centre_wcs"):
        if block.get(key) is not None and reference is None:
            raise LensToolError(f"{path}, line {block.get(key).line}: '{key}' needs 'reference 3 RA Dec' in runmode")
    if block.get("x_centre_wcs") is not None:
        x = float(radec_to_xy(num("x_centre_wcs"), reference[1], *reference)[0])
    if block.get("y_centre_wcs") is not None:
        y = float(radec_to_xy(reference[0], num("y_centre_wcs"), *reference)[1])
    emass = num("ellipticite", None, aliases=("ellipticity", "gamma"))
    epot = num("ellip_pot")
    angle = num("angle_pos", 0.0)
    name = block.argument or (block.get("nid").values[0] if block.get("nid") else "")

    if profil == 81:
        if emass in (None, 0.0) and epot not in (None, 0.0):
            emass = 2.0 * epot / (1.0 + epot * epot)  # LensTool set_lens.c
        emass = 0.0 if emass is None else emass
        sigma = num("v_disp", None, aliases=("sigma_e",))
        if sigma is None:
            raise LensToolError(f"{where}: missing required key 'v_disp'")
        kpc = cosmo.kpc_per_arcsec(z_lens)
        rc_kpc = num("core_radius_kpc", 0.0, aliases=("scale_radius_kpc", "re_kpc"))
        rc = rc_kpc / kpc if rc_kpc else num("core_radius", 0.0, aliases=("scale_radius", "re"))
        rcut_kpc = num("cut_radius_kpc", None, aliases=("virial_radius_kpc", "r200_kpc"))
        rcut = rcut_kpc / kpc if rcut_kpc is not None else num("cut_radius", None, aliases=("virial_radius", "r200"))
        if rcut is None:
            raise LensToolError(f"{where}: missing required key 'cut_radius' (or 'cut_radius_kpc')")
        params = dict(
            sigma_kms=sigma, core_radius_arcsec=rc, cut_radius_arcsec=rcut, emass=emass, angle_deg=angle,
            center_x=x, center_y=y,
        )
        profile = "dpie"
    elif profil == 14:
        gamma = emass
        if gamma is None:
            raise LensToolError(f"{where}: missing required key 'gamma'")
        kappa = num("kappa", 0.0)
        if kappa != 0.0:
            raise LensToolError(
                f"{path}, line {block.get('kappa').line}: profil 14 with kappa = {kappa:g} is not supported "
                "(LensTool ignores kappa; set it to 0 or add a mass sheet explicitly)"
            )
        params = dict(gamma=gamma, angle_deg=angle, kappa=0.0, center_x=x, center_y=y)
        profile = "shear"
    elif profil == 1:
        if (emass or 0.0) != 0.0 or (epot or 0.0) != 0.0:
            raise LensToolError(
                f"{where}: profil 1 with non-zero ellipticity (an elliptical potential) is not supported; "
                "supported: 81 (dPIE), 14 (shear), 1 (SIS, ellipticity 0)"
            )
        sigma = num("v_disp", None, aliases=("sigma_e",))
        if sigma is None:
            raise LensToolError(f"{where}: missing required key 'v_disp'")
        params = dict(theta_e_arcsec=4.0 * PIA_C2 * sigma * sigma, center_x=x, center_y=y)
        profile = "sis"
    else:
        raise LensToolError(
            f"{path}, line {profil_entry.line}: unsupported profil {profil} in potentiel '{block.argument}' "
            "(supported: 81 dPIE, 14 external shear, 1 SIS)"
        )
    try:
        return LensComponent(profile, params, name), z_lens
    except Exception as exc:
        raise LensToolError(f"{where}: {exc}") from None


def _potfile_components(path: Path, block: _Block, cosmo: Cosmology, reference) -> tuple[list[LensComponent], float]:
    """The dPIEs of a ``potfile`` block (LensTool ``r_potfile.c``, ``set_potfile.c``)."""
    where = f"{path}, line {block.line}: potfile"
    filein = block.get("filein")
    if filein is None:
        raise LensToolError(f"{where}: missing required key 'filein'")
    ftype = _number(path, filein, 0, int)
    if len(filein.values) < 2:
        raise LensToolError(f"{path}, line {filein.line}: 'filein' expects a type and a file name")
    if ftype not in (1, 3):
        raise LensToolError(f"{path}, line {filein.line}: potfile filein type {ftype} is not supported (1 or 3)")
    cat_path = Path(filein.values[1])
    if not cat_path.is_absolute():
        cat_path = path.parent / cat_path
    ptype = _number(path, block.get("type"), 0, int) if block.get("type") is not None else 81
    if ptype != 81:
        raise LensToolError(f"{path}, line {block.get('type').line}: potfile type {ptype} is not supported (81)")

    def value(key: str, flagged: bool, required: bool, default: float | None = None) -> float | None:
        entry = block.get(key)
        if entry is None:
            if required and default is None:
                raise LensToolError(f"{where}: missing required key '{key}'")
            return default
        # keys read by LensTool as "%d%lf%lf" (flag, value1, value2) use value1
        if flagged:
            _number(path, entry, 0, int)
            return _number(path, entry, 1)
        return _number(path, entry, 0)

    zlens_entry = block.get("zlens") or block.get("z_lens")
    if zlens_entry is None:
        raise LensToolError(f"{where}: missing required key 'zlens'")
    z_lens = _number(path, zlens_entry)
    mag0 = value("mag0", False, True)
    sigma0 = value("sigma", True, True)
    kpc = cosmo.kpc_per_arcsec(z_lens)
    if block.get("cut") is not None:
        cut0 = value("cut", True, True)
    elif block.get("cutkpc") is not None:
        cut0 = value("cutkpc", True, True) / kpc
    else:
        raise LensToolError(f"{where}: missing required key 'cut' (or 'cutkpc')")
    if block.get("core") is not None:
        core0 = value("core", False, True)
    elif block.get("corekpc") is not None:
        core0 = value("corekpc", False, True) / kpc
    else:
        raise LensToolError(f"{where}: missing required key 'core' (or 'corekpc')")
    slope = value("slope", True, False, POTFILE_DEFAULT_SLOPE)
    vdslope = value("vdslope", True, False, POTFILE_DEFAULT_VDSLOPE)
    if slope == 0 or vdslope == 0:
        raise LensToolError(f"{where}: slope and vdslope must be non-zero")

    members = read_member_catalogue(cat_path, reference)
    components = []
    for row in members:
        lum_ratio_mag = 0.4 * (mag0 - row["mag"])  # log10(L/L*)
        sigma = sigma0 * 10.0 ** (lum_ratio_mag / vdslope)
        rcut = cut0 * 10.0 ** (lum_ratio_mag * 2.0 / slope)
        rcore = core0 * 10.0 ** (lum_ratio_mag / 2.0)
        a, b = row["a"], row["b"]
        emass = (a * a - b * b) / (a * a + b * b) if a * a + b * b > 0 else 0.0
        if emass < 0:
            raise LensToolError(f"{cat_path}: member '{row['id']}' has b > a (negative ellipticity)")
        try:
            components.append(
                LensComponent(
                    "dpie",
                    dict(
                        sigma_kms=sigma, core_radius_arcsec=rcore, cut_radius_arcsec=rcut, emass=emass,
                        angle_deg=row["theta"], center_x=row["x"], center_y=row["y"],
                    ),
                    str(row["id"]),
                )
            )
        except Exception as exc:
            raise LensToolError(f"{cat_path}: member '{row['id']}': {exc}") from None
    return components, z_lens


# --------------------------------------------------------------------------------------------- catalogues
def _read_lines(path: Path) -> list[str]:
    path = Path(path)
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        raise LensToolError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LensToolError(f"{path}: cannot read ({exc})") from None


def _catalogue_reference(path: Path, number: int, line: str):
    """Parse a ``#REFERENCE n [RA Dec]`` header: returns ``(mode, (ra0, dec0) or None)``."""
    tokens = line.lstrip("#").split()
    try:
        mode = int(tokens[1])
        if mode == 0:
            return 0, None
        if mode == 3:
            return 3, (float(tokens[2]), float(tokens[3]))
    except (IndexError, ValueError):
        pass
    raise LensToolError(f"{path}, line {number}: header '{line.strip()}' not understood (expected "
                        "'#REFERENCE 0' or '#REFERENCE 3 RA Dec')")


def _read_table_lines(path: Path, columns: tuple[str, ...], what: str):
    """Rows of a whitespace catalogue with a first string column and numeric others, plus its reference."""
    lines = _read_lines(path)
    ref_mode, ref = 0, None
    rows: list[tuple] = []
    numbers: list[int] = []
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if stripped.lstrip("#").strip().upper().startswith("REFERENCE"):
                ref_mode, ref = _catalogue_reference(path, number, stripped)
            continue
        tokens = stripped.split("#", 1)[0].split()
        if len(tokens) < len(columns):
            raise LensToolError(
                f"{path}, line {number}: a {what} expects {len(columns)} columns ({' '.join(columns)}), got "
                f"{len(tokens)}"
            )
        values: list[Any] = [tokens[0]]
        for name, token in zip(columns[1:], tokens[1 : len(columns)]):
            try:
                val = float(token)
            except ValueError:
                raise LensToolError(f"{path}, line {number}: column '{name}' expects a number, got '{token}'") from None
            if not math.isfinite(val):
                raise LensToolError(f"{path}, line {number}: column '{name}' must be finite, got '{token}'")
            values.append(val)
        rows.append(tuple(values))
        numbers.append(number)
    if not rows:
        raise LensToolError(f"{path}: no rows found (expected a {what}: {' '.join(columns)})")
    return rows, numbers, ref_mode, ref


_LETTER_SUFFIX_RE = re.compile(r"^(.*\d)[A-Za-z]+$")


def image_family(image_id: str) -> str:
    """The family (one source) of a LensTool image id: the part before the last dot (``'6.1'`` -> ``'6'``), or
    before a letter suffix when there is no dot (``'6a'`` -> ``'6'``); otherwise the id itself."""
    image_id = str(image_id)
    if "." in image_id:
        return image_id.rsplit(".", 1)[0]
    match = _LETTER_SUFFIX_RE.match(image_id)
    return match.group(1) if match else image_id


def read_multiple_images(path: str | Path, reference: tuple[float, float] | None = None):
    """Read a LensTool multiple-image catalogue ``id RA Dec a b theta z mag`` into an astropy Table.

    Parameters
    ----------
    path
        The catalogue; ``#`` starts a comment. Positions are absolute RA, Dec in degrees unless a
        ``#REFERENCE 3 RA0 Dec0`` header says they are LensTool relative arcsec.
    reference
        Optional model reference ``(RA0, Dec0)``; when given, columns ``x``, ``y`` (arcsec, model frame) are added.

    Returns
    -------
    astropy.table.Table
        Columns ``id``, ``family`` (:func:`image_family`), ``ra``, ``dec`` (deg), ``a``, ``b``, ``theta``,
        ``z``, ``mag``, ``line`` (line number in the file) and, with ``reference``, ``x``, ``y``. ``z <= 0`` (a
        redshift left to the fit) is kept as read: :func:`resolve_redshifts` fills it in. ``meta``:
        ``source_file``, ``header_redshifts`` (family -> ``(z, line)`` of ``#N z:`` comment lines).
    """
    from astropy.table import Table

    path = Path(path)
    columns = ("id", "ra", "dec", "a", "b", "theta", "z", "mag")
    rows, numbers, ref_mode, ref = _read_table_lines(path, columns, "multiple-image catalogue")
    table = Table(rows=rows, names=columns, dtype=(str, float, float, float, float, float, float, float))
    if ref_mode == 3:
        table["ra"], table["dec"] = xy_to_radec(table["ra"], table["dec"], *ref)
    table["family"] = [image_family(i) for i in table["id"]]
    table["line"] = numbers
    if reference is not None:
        table["x"], table["y"] = radec_to_xy(table["ra"], table["dec"], *reference)
    table.meta["source_file"] = str(path)
    table.meta["header_redshifts"] = _header_redshifts(path)
    return table


#: LensTool prints '#<names> z:<z> dlsds:<r>' for the optimised redshifts; catalogues carry such lines.
_HEADER_Z_RE = re.compile(r"^#\s*([^#:=]+?)\s+z\s*[:=]\s*([-+0-9.eE]+)", re.IGNORECASE)


def _header_redshifts(path: Path) -> dict:
    """Family -> ``(z, line)`` from comment lines ``#N z: value`` of a multiple-image catalogue."""
    out = {}
    for number, raw in enumerate(_read_lines(path), start=1):
        match = _HEADER_Z_RE.match(raw.strip())
        if match is None:
            continue
        try:
            z = float(match.group(2))
        except ValueError:
            raise LensToolError(f"{path}, line {number}: '#{match.group(1)} z:' expects a number, got "
                                f"'{match.group(2)}'") from None
        for name in re.split(r"[\s,]+", match.group(1).strip()):
            out[name] = (z, number)
    return out


def _by_family(values: dict, images) -> dict:
    """Re-key ``name -> value`` by catalogue family: a name is a family ('6'), one of its images ('6.1') or a
    family written as a float ('6.0', as some best.par files do); an exact family name wins."""
    families = set(str(f) for f in images["family"])
    family_of_image = {str(i): str(f) for i, f in zip(images["id"], images["family"])}
    out: dict = {}
    exact = {}
    for name, value in values.items():
        if name in families:
            exact[name] = value
        elif name in family_of_image:
            out.setdefault(family_of_image[name], value)
        elif "." in name and name.rsplit(".", 1)[0] in families:
            out.setdefault(name.rsplit(".", 1)[0], value)
    out.update(exact)
    return out


def resolve_redshifts(images, image_block: ImageBlock | None = None, parfile: str | Path | None = None):
    """Give every family its source redshift: the best.par's ``z_m_limit``, else the catalogue's, else ``#N z:``.

    LensTool catalogues leave the redshift of a family without spectroscopy at 0 (or at a photometric guess) and
    the fit optimises it; the ``best.par`` then holds the value of the best model in the ``image`` block as
    ``z_m_limit idx family flag z ...`` (flag 0), which is the redshift that model used. Some catalogues give it
    instead in a ``#N z: value`` comment line (as LensTool prints its optimised redshifts). A ``z_m_limit`` with a
    non-zero flag is the prior of an input file: it only fills families at ``z <= 0`` (with a warning).

    Parameters
    ----------
    images
        A table of :func:`read_multiple_images`.
    image_block
        The model's :class:`ImageBlock` (its ``z_m_limit``).
    parfile
        The parameter file, to name it in messages.

    Returns
    -------
    images, warnings
        A copy of the table with ``z`` filled in and a column ``z_origin`` (``catalogue``, ``z_m_limit`` or
        ``header``), without the families that have no redshift; and one warning line per family left out.

    Raises
    ------
    LensToolError
        A family whose images have different redshifts (naming the lines), or a negative header redshift.
    """
    source_file = images.meta.get("source_file", "multiple images")
    header = _by_family(images.meta.get("header_redshifts", {}) or {}, images)
    z_m = _by_family(image_block.z_m_limit if image_block is not None else {}, images)
    z_m_lines = _by_family(image_block.z_m_limit_lines if image_block is not None else {}, images)
    z_m_flags = _by_family(image_block.z_m_limit_flags if image_block is not None else {}, images)
    z = np.array(images["z"], dtype=float)
    origin = np.array(["catalogue"] * len(images), dtype=object)
    keep = np.ones(len(images), dtype=bool)
    warnings = []
    families = np.asarray(images["family"])
    lines = np.asarray(images["line"]) if "line" in images.colnames else np.zeros(len(images), dtype=int)
    for family in dict.fromkeys(families):
        idx = np.flatnonzero(families == family)
        values = z[idx]
        distinct = sorted(set(np.round(values, 6)))
        if len(distinct) > 1:
            listing = ", ".join(f"line {lines[i]}: z = {z[i]:g}" for i in idx)
            raise LensToolError(f"{source_file}: family '{family}' has mixed redshifts ({listing}); one family is one "
                                "source at one redshift")
        if values[0] > 0 and (family not in z_m or z_m_flags.get(family, 0) != 0):
            continue
        if family in z_m:
            if values[0] > 0 and abs(values[0] - z_m[family]) > 1e-3:
                # the fit optimised this family's redshift from the catalogue's value: the best model used its z
                warnings.append(
                    f"{parfile}, line {z_m_lines.get(family, 0)}: family '{family}' has z = {values[0]:g} in "
                    f"{source_file} (line {lines[idx[0]]}) and the optimised z_m_limit z = {z_m[family]:g}: used "
                    "the optimised one, as the best model did"
                )
            z[idx], origin[idx] = z_m[family], "z_m_limit"
            if z_m_flags.get(family, 0) != 0:
                warnings.append(
                    f"{parfile}, line {z_m_lines.get(family, 0)}: z_m_limit of family '{family}' is a prior (flag "
                    f"{z_m_flags[family]}), not an optimised value: took its first bound z = {z_m[family]:g}; use "
                    "the best.par of the fit"
                )
        elif family in header:
            value, line = header[family]
            if not value > 0:
                raise LensToolError(
                    f"{source_file}, line {line}: family '{family}' needs a redshift z > 0, got {value}"
                )
            z[idx], origin[idx] = value, "header"
        else:
            keep[idx] = False
            where = f" nor in {parfile}" if parfile is not None else ""
            warnings.append(
                f"{source_file}, line {lines[idx[0]]}: family '{family}' ({len(idx)} images) has z = {values[0]:g} and "
                f"no redshift in a 'z_m_limit' line{where} or a '#{family} z:' header: left out"
            )
    out = images.copy()
    out["z"] = z
    out["z_origin"] = origin.astype(str)
    return out[keep], warnings


def read_member_catalogue(path: str | Path, reference: tuple[float, float] | None = None):
    """Read a LensTool member (potfile) catalogue ``id x y a b theta mag lum``.

    A ``#REFERENCE 3 RA0 Dec0`` header means ``x, y`` are relative arcsec around ``(RA0, Dec0)``; without it (or
    with ``#REFERENCE 0``) they are absolute RA, Dec in degrees (LensTool ``set_potfile.c``).

    Parameters
    ----------
    reference
        The model's reference ``(RA0, Dec0)``: positions are returned in that frame. Without it, the
        catalogue's own reference is used (and is required).

    Returns
    -------
    astropy.table.Table
        Columns ``id``, ``x``, ``y`` (arcsec, model frame), ``ra``, ``dec`` (deg), ``a``, ``b``, ``theta`` (deg),
        ``mag``, ``lum``.
    """
    from astropy.table import Table

    path = Path(path)
    columns = ("id", "x", "y", "a", "b", "theta", "mag", "lum")
    rows, _, ref_mode, ref = _read_table_lines(path, columns, "member catalogue")
    table = Table(rows=rows, names=columns, dtype=(str, float, float, float, float, float, float, float))
    if ref_mode == 3:
        ra, dec = xy_to_radec(table["x"], table["y"], *ref)
    else:
        ra, dec = np.array(table["x"], dtype=float), np.array(table["y"], dtype=float)
    frame = reference if reference is not None else ref
    if frame is None:
        raise LensToolError(f"{path}: absolute coordinates need a model reference (runmode 'reference 3 RA Dec')")
    x, y = radec_to_xy(ra, dec, *frame)
    table["x"], table["y"] = x, y
    table["ra"], table["dec"] = ra, dec
    table = table["id", "x", "y", "ra", "dec", "a", "b", "theta", "mag", "lum"]
    table.meta["source_file"] = str(path)
    return table


# --------------------------------------------------------------------------------------------- models
#: How the planes of a model with potentials at several redshifts are treated (``read_parfile(planes=...)``).
PLANES = {
    # the recursive equation of lenstronomy's MultiPlane, and of the multi-plane LensTool releases (7 and later)
    "multi": "ray-traced through each lens plane in order (recursive multi-plane lens equation)",
    # LensTool 6 (o_dpl.c, e_grad.c): one D_ls/D_s(z of lens[0], z_s) scales the summed deflection of all potentials
    "single": "every potential at the first potential's redshift (LensTool 6: one D_ls/D_s for all)",
}
#: LensTool's ``image`` block ``forme`` values of the image-plane fit and the barycentre of the source they use.
BARYCENTRE_BY_FORME = {-1: "mean", -2: "magnification"}
#: Positional error (arcsec) that turns a header ``Chi2pos`` into an rms when the par file gives none.
DEFAULT_SIGPOS_ARCSEC = 0.5


@dataclasses.dataclass
class ImageBlock:
    """What the ``image`` block of a parameter file says about the multiple images.

    Attributes
    ----------
    forme
        LensTool's ``forme`` (``-1``: image-plane fit, source = mean of the ray-traced images; ``-2``: source =
        their ``|mu|``-weighted mean; ``>= 0``: source-plane fits), or None without the key.
    z_m_limit
        Family name -> optimised redshift, from ``z_m_limit idx family flag z ...`` lines (the value LensTool
        writes in a ``best.par`` for families without a spectroscopic redshift).
    z_m_limit_lines
        Family name -> line number of its ``z_m_limit``.
    z_m_limit_flags
        Family name -> the ``bk`` flag (0 in a ``best.par``; non-zero: a prior of an input file, whose ``min`` is
        then taken).
    sigpos_arcsec
        ``sigposArcsec`` (positional error of the images), or None.
    multfile
        The ``multfile`` name, or None.
    line
        Line of the ``image`` block (0 when the file has none).
    """

    forme: int | None = None
    z_m_limit: dict = dataclasses.field(default_factory=dict)
    z_m_limit_lines: dict = dataclasses.field(default_factory=dict)
    z_m_limit_flags: dict = dataclasses.field(default_factory=dict)
    sigpos_arcsec: float | None = None
    multfile: str | None = None
    line: int = 0


@dataclasses.dataclass
class LensToolModel:
    """A LensTool mass model read from a parameter file.

    Attributes
    ----------
    model
        The :class:`LensModel` (deflections at ``D_ds / D_s = 1``), with ``members`` attached; for potentials at
        several redshifts read with ``planes="multi"``, a :class:`~lenssearch.lensing.model.MultiPlaneLensModel`.
    reference_radec
        ``(RA0, Dec0)`` in degrees of the relative frame, or None when the file has no reference.
    cosmology
        From the ``cosmologie`` block (LensTool defaults otherwise, see ``notes``).
    z_lens
        Redshift of the first potential (LensTool's ``lens[0]``, the cluster).
    members
        Member catalogue (see :func:`read_member_catalogue`) with a column ``component`` naming the model
        component of each member ('' when none), or None.
    path
        The parameter file.
    image
        The ``image`` block (:class:`ImageBlock`).
    chi2pos
        LensTool's ``#Chi2pos:`` of the file's header (a ``best.par`` of an image-plane fit), or None.
    z_planes
        The distinct redshifts of the potentials, increasing.
    planes
        ``"multi"`` or ``"single"`` (see :data:`PLANES`); ``"single"`` also when there is one redshift.
    notes
        Assumptions the reader made (e.g. the cosmology of a file without a ``cosmologie`` block).
    """

    model: Any
    reference_radec: tuple[float, float] | None
    cosmology: Cosmology
    z_lens: float
    members: Any
    path: Path
    image: ImageBlock = dataclasses.field(default_factory=ImageBlock)
    chi2pos: float | None = None
    z_planes: tuple[float, ...] = ()
    planes: str = "single"
    notes: list = dataclasses.field(default_factory=list)

    @property
    def multi_plane(self) -> bool:
        """True when the model is ray-traced through several planes."""
        return self.planes == "multi" and len(self.z_planes) > 1

    def radec_to_xy(self, ra_deg, dec_deg):
        """Positions in the model frame (arcsec)."""
        return radec_to_xy(ra_deg, dec_deg, *self._reference())

    def xy_to_radec(self, x_arcsec, y_arcsec):
        """Sky positions (deg) of model-frame positions."""
        return xy_to_radec(x_arcsec, y_arcsec, *self._reference())

    def _reference(self) -> tuple[float, float]:
        if self.reference_radec is None:
            raise LensToolError(f"{self.path}: no 'reference 3 RA Dec' in runmode, sky positions are undefined")
        return self.reference_radec


_CHI2POS_RE = re.compile(r"^#\s*chi2pos\s*:\s*([-+0-9.eE]+)", re.IGNORECASE)


def _parse_image_block(path: Path, block: _Block | None) -> ImageBlock:
    """The keys of the ``image`` block that the image-plane check needs (LensTool ``r_image.c``)."""
    out = ImageBlock()
    if block is None:
        return out
    out.line = block.line
    if (e := block.get("forme")) is not None:
        out.forme = _number(path, e, 0, int)
    if (e := block.get("sigposarcsec")) is not None:
        out.sigpos_arcsec = _number(path, e)
        if not out.sigpos_arcsec > 0:
            raise LensToolError(f"{path}, line {e.line}: sigposArcsec must be positive, got {out.sigpos_arcsec}")
    if (e := block.get("multfile")) is not None and len(e.values) >= 2:
        out.multfile = e.values[1]
    for entry in block.entries:
        if entry.key != "z_m_limit":
            continue
        # LensTool (r_image.c, o_print_res.c): 'z_m_limit opt name [name ...] bk min max dderr', several families
        # bound to one redshift; a best.par writes 'z_m_limit 1 <names> 0 <z> 0.000 0.0000' (z in 'min')
        n = len(entry.values)
        if n < 4:
            raise LensToolError(
                f"{path}, line {entry.line}: 'z_m_limit' expects 'index family flag z ...', got "
                f"'{' '.join(entry.values)}'"
            )
        names, z_index = (entry.values[1:n - 4], n - 3) if n >= 6 else (entry.values[1:2], 3)
        z = _number(path, entry, z_index)
        if not z > 0:
            raise LensToolError(
                f"{path}, line {entry.line}: z_m_limit of family '{' '.join(names)}' must be > 0, got {z}"
            )
        flag = _number(path, entry, n - 4 if n >= 6 else 2, int)
        for name in names:
            out.z_m_limit[name] = z
            out.z_m_limit_lines[name] = entry.line
            out.z_m_limit_flags[name] = flag
    return out


def read_parfile(path: str | Path, members: str | Path | None = None, planes: str = "multi") -> LensToolModel:
    """Read a LensTool parameter file into a :class:`LensToolModel`.

    Parameters
    ----------
    path
        The ``.par`` file (e.g. a ``best.par``).
    members
        Optional member catalogue to attach as ``members`` (e.g. ``ref_potential_w_clumpNE.cat``); by default the
        catalogue of the first ``potfile`` block, if any.
    planes
        Potentials at several ``z_lens``: ``"multi"`` ray-traces through each plane in order
        (:class:`~lenssearch.lensing.model.MultiPlaneLensModel`); ``"single"`` puts every potential at the first
        one's redshift, as LensTool 6 does (one ``D_ls / D_s`` for the whole model). Each potential's radii in kpc
        are converted at its own ``z_lens`` in both cases.

    Raises
    ------
    LensToolError
        Malformed, truncated (no ``fini``), incomplete (fewer potentials than ``grille``'s ``nlentille``) or
        unsupported content, naming the file and the line.
    """
    from lenssearch.lensing.model import MultiPlaneLensModel

    if planes not in PLANES:
        raise LensToolError(f"{path}: planes must be one of {sorted(PLANES)}, got {planes!r}")
    path = Path(path)
    lines = _read_lines(path)
    text = "\n".join(lines)
    if not text.strip():
        raise LensToolError(f"{path}, line 1: empty parameter file")
    blocks = _split_blocks(path, text)
    notes: list[str] = []
    runmode = next((b for b in blocks if b.name == "runmode"), None)
    _, reference = _parse_reference(path, runmode) if runmode is not None else (0, None)
    cosmo_block = next((b for b in blocks if b.name in ("cosmologie", "cosmology")), None)
    cosmo = _parse_cosmology(path, cosmo_block)
    if cosmo_block is None:
        notes.append(
            f"{path}: no 'cosmologie' block; assumed LensTool's default flat LambdaCDM, H0 = {cosmo.H0:g} km/s/Mpc, "
            f"Omega_M = {cosmo.Om0:g}, Omega_Lambda = {1 - cosmo.Om0:g}"
        )
    image = _parse_image_block(path, next((b for b in blocks if b.name == "image"), None))
    chi2pos = None
    for raw in lines:
        if (match := _CHI2POS_RE.match(raw.strip())) is not None:
            chi2pos = float(match.group(1))
            break

    components: list[LensComponent] = []
    redshifts: list[float] = []
    n_potentiel = 0
    potfile_catalogue = None
    for block in blocks:
        if block.name in ("potentiel", "potential"):
            comp, z = _potential_component(path, block, cosmo, reference)
            components.append(comp)
            redshifts.append(z)
            n_potentiel += 1
        elif block.name == "potfile":
            comps, z = _potfile_components(path, block, cosmo, reference)
            components.extend(comps)
            redshifts.extend([z] * len(comps))
            if potfile_catalogue is None:
                filein = block.get("filein").values[1]
                potfile_catalogue = Path(filein) if Path(filein).is_absolute() else path.parent / filein
    if not components:
        raise LensToolError(f"{path}, line 1: no 'potentiel' or 'potfile' block defines a mass model")
    grille = next((b for b in blocks if b.name == "grille"), None)
    if grille is not None and (e := grille.get("nlentille")) is not None:
        expected = _number(path, e, 0, int)
        if len(components) < expected:
            raise LensToolError(
                f"{path}, line {e.line}: 'nlentille {expected}' but the file defines {len(components)} potentials "
                f"({n_potentiel} 'potentiel' blocks): it is incomplete"
            )

    member_table = None
    member_path = Path(members) if members is not None else potfile_catalogue
    if member_path is not None:
        member_table = read_member_catalogue(member_path, reference)
        names = {c.name for c in components}
        member_table["component"] = [str(i) if str(i) in names else "" for i in member_table["id"]]
    z_lens = redshifts[0]
    z_planes = tuple(sorted({round(z, 6) for z in redshifts}))
    if len(z_planes) > 1 and planes == "multi":
        by_z: dict[float, list[LensComponent]] = {}
        for comp, z in zip(components, redshifts):
            by_z.setdefault(round(z, 6), []).append(comp)
        model = MultiPlaneLensModel([LensModel(c, z, cosmo) for z, c in by_z.items()], cosmo, members=member_table)
    else:
        planes = "single"
        model = LensModel(components, z_lens, cosmo, members=member_table)
    return LensToolModel(model, reference, cosmo, z_lens, member_table, path, image, chi2pos, z_planes, planes, notes)
