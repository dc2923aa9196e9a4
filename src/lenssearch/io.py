"""Small I/O helpers shared by every stage: atomic writes that never remove what the program did not write.

:func:`atomic_path` yields a temporary path beside the output; whatever the block writes there (a file or a folder)
is renamed onto the output only when the block succeeds. An existing output is replaced only when that cannot lose
anything of the user's:

- a file replaces a file (the output path the user named) or a symbolic link (the link, not what it points to);
- a folder replaces a folder only when every entry of the old folder was written by lenssearch: each folder output
  carries a manifest (:data:`MANIFEST`, one relative path a line) of what it holds, and later atomic writes inside
  it add their names to it;
- anything else (a folder where a file is expected, a file or a link where a folder is expected, a folder holding
  files that lenssearch did not write) raises :class:`OutputPathError`, naming the path, and leaves it untouched.

:func:`check_output_path` makes the same check before a verb starts its work, so that a bad ``--out`` fails at once.
Temporary names carry the host and the process id (``.<name>.<host>-<pid>.<random>.tmp``): the temporaries of a
process that died without cleaning up (``kill -9``) are removed by the next write of the same output.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator, Literal, Optional

from lenssearch.errors import LensSearchError

#: Manifest of a folder output: the entries (relative paths, folders with a trailing ``/``) that lenssearch wrote.
MANIFEST = ".lenssearch-written"

Kind = Literal["file", "dir"]


class OutputPathError(LensSearchError):
    """An output path that cannot be written without removing something that lenssearch did not write."""


# ------------------------------------------------------------------------------------------ temporary names
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def _tmp_prefix(name: str) -> str:
    return f".{name}.{_host()}-{os.getpid()}."


_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def _is_our_temporary(name: str) -> bool:
    return _TMP_RE.match(name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by processes of this host that no longer run (e.g. ``kill -9``).

    Only names of the form ``.<name>.<host>-<pid>.<random>.tmp`` written by :func:`atomic_path` are touched, and
    only when ``<host>`` is this machine and process ``<pid>`` is gone; returns the paths removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    host = _host()
    for candidate in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        match = _TMP_RE.match(candidate.name)
        if match is None or match["name"] != path.name or match["host"] != host:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
            removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with the glob wildcards ``*?[`` escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


# ------------------------------------------------------------------------------------------ manifests
def _read_manifest(folder: Path) -> Optional[set[str]]:
    try:
        lines = (folder / MANIFEST).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return {line for line in lines if line and not line.startswith("#")}


def _write_manifest(folder: Path, exclude: frozenset[str] = frozenset()) -> None:
    """List what ``folder`` holds, less the ``exclude`` entries (the user's, carried over) and what they hold."""
    entries = []
    skip = tuple(e for e in exclude if e.endswith("/"))
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        rel_root = Path(root).relative_to(folder)
        for d in dirs:
            entries.append((rel_root / d).as_posix() + "/")
        for f in sorted(files):
            if rel_root == Path(".") and f == MANIFEST:
                continue
            entries.append((rel_root / f).as_posix())
    entries = [e for e in entries if e not in exclude and not e.startswith(skip)]
    text = "# written by lenssearch: the entries below may be replaced by its next run; others are never removed\n"
    (folder / MANIFEST).write_text(text + "".join(e + "\n" for e in sorted(entries)))


def _record_in_manifests(path: Path) -> None:
    """Add ``path`` (just written) to the manifest of the nearest folder output that holds it."""
    path = path.absolute()
    is_dir = path.is_dir() and not path.is_symlink()
    for ancestor in path.parents:
        known = _read_manifest(ancestor)
        if known is None:
            continue
        rel = path.relative_to(ancestor).as_posix() + ("/" if is_dir else "")
        parents = [p.as_posix() + "/" for p in Path(rel.rstrip("/")).parents if p != Path(".")]
        new = [e for e in (*parents, rel) if e not in known]
        if new:
            with contextlib.suppress(OSError), open(ancestor / MANIFEST, "a") as fh:
                fh.write("".join(e + "\n" for e in new))
        return


def foreign_entries(folder: str | Path, limit: Optional[int] = 5) -> list[str]:
    """Up to ``limit`` entries of ``folder`` (relative paths) that lenssearch did not write.

    An entry is lenssearch's when the manifest of ``folder``, or of a folder output nested in it, lists it, or when
    it is one of :func:`atomic_path`'s temporaries. A folder without a manifest is wholly foreign (but empty).
    """
    folder = Path(folder)
    found: list[str] = []

    def walk(current: Path, owners: list[tuple[Path, set[str]]]) -> None:
        own = _read_manifest(current)
        if own is not None:
            owners = [*owners, (current, own)]
        try:
            children = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            found.append(current.relative_to(folder).as_posix() + "/")
            return
        for entry in children:
            if limit is not None and len(found) >= limit:
                return
            child = Path(entry.path)
            is_dir = entry.is_dir(follow_symlinks=False)
            if entry.name == MANIFEST and own is not None:
                continue
            if _is_our_temporary(entry.name):
                continue
            listed = any(
                child.relative_to(root).as_posix() + ("/" if is_dir else "") in names for root, names in owners
            )
            if not listed:
                found.append(child.relative_to(folder).as_posix() + ("/" if is_dir else ""))
                continue
            if is_dir:
                walk(child, owners)

    walk(folder, [])
    return found


# ------------------------------------------------------------------------------------------ checks
def _describe(path: Path) -> str:
    if path.is_symlink():
        return "a symbolic link"
    if path.is_dir():
        return "a folder"
    if path.is_file():
        return "a file"
    return "neither a file nor a folder"


def check_output_path(path: str | Path, kind: Optional[Kind] = None, carry_over: bool = False) -> None:
    """Raise :class:`OutputPathError` if writing a ``kind`` output at ``path`` would remove what lenssearch did
    not write (see the module docstring); ``kind=None`` checks only what is wrong whatever the output is.
    ``carry_over``: the writer copies the existing folder into the new one (an update), so a folder holding the
    user's files is not refused here (:func:`atomic_path` checks that they are all still there).

    Nothing is created or removed.
    """
    path = Path(path)
    for parent in (path.parent, *path.parent.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputPathError(f"{path}: cannot write here, {parent} is {_describe(parent)}, not a folder")
            break
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink():
        if kind == "dir":
            raise OutputPathError(
                f"{path}: is a symbolic link; expected a folder path for this output (give a new path, or the "
                "folder the link points to)"
            )
        return
    if path.is_dir():
        if kind == "file":
            raise OutputPathError(
                f"{path}: is a folder; expected a file path for this output (e.g. {path / 'out.ecsv'}); "
                "the folder was left untouched"
            )
        foreign = [] if carry_over else foreign_entries(path)
        if foreign:
            raise OutputPathError(
                f"{path}: the folder exists and holds files that lenssearch did not write ({', '.join(foreign)}"
                f"{', ...' if len(foreign) >= 5 else ''}); it was left untouched: give a new or empty folder, "
                "or remove it yourself"
            )
        return
    if kind == "dir":
        raise OutputPathError(
            f"{path}: is {_describe(path)}; expected a folder path for this output; the file was left untouched"
        )
    if not path.is_file():
        raise OutputPathError(f"{path}: is {_describe(path)}; expected a file path for this output")


def check_output_folder(path: str | Path, files: tuple[str, ...] = (), folders: tuple[str, ...] = ()) -> None:
    """Check a folder that a verb writes its outputs into, one by one (``search --out``): ``path`` may be missing
    or an existing folder (whose other files stay), not a file; ``files`` and ``folders`` inside it are checked
    with :func:`check_output_path`. Nothing is created or removed.

    Raises
    ------
    OutputPathError
        Naming the path and what is wrong.
    """
    path = Path(path)
    if not path.is_dir():  # an existing folder (or a link to one) is written into, its other files kept
        check_output_path(path, "dir")
    for name in files:
        check_output_path(path / name, "file")
    for name in folders:
        check_output_path(path / name, "dir")


# ------------------------------------------------------------------------------------------ atomic writes
@contextlib.contextmanager
def atomic_path(path: str | Path, kind: Optional[Kind] = None, carry_over: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failing write never leaves a file (or folder) at ``path`` that looks finished. Works for
    files and for folders (whatever the block creates at the temporary path; a folder gets a :data:`MANIFEST`).
    ``path`` is checked with :func:`check_output_path` before the block runs and again before the rename: an
    existing output is replaced only when nothing of the user's is lost, else :class:`OutputPathError` is raised
    and ``path`` is left as it was.

    Parameters
    ----------
    kind
        ``"file"`` or ``"dir"`` when the caller knows what it writes (a wrong target then fails before the work).
    carry_over
        The block copies the existing folder into the temporary one and changes it (an update, e.g. painting the
        images of a field): the existing folder may hold files that lenssearch did not write, provided every one
        of them is still in the new folder (else :class:`OutputPathError`); they stay out of its manifest.
    """
    path = Path(path)
    check_output_path(path, kind, carry_over)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    old: Optional[Path] = None
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise FileNotFoundError(f"{path}: nothing was written")
        written: Kind = "dir" if tmp.is_dir() and not tmp.is_symlink() else "file"
        check_output_path(path, written, carry_over)
        carried: frozenset[str] = frozenset()
        if carry_over and written == "dir" and path.is_dir() and not path.is_symlink():
            carried = frozenset(foreign_entries(path, limit=None))
            lost = sorted(e for e in carried if not (tmp / e.rstrip("/")).exists())
            if lost:
                raise OutputPathError(f"{path}: the update would remove files that lenssearch did not write "
                                      f"({', '.join(lost[:5])}); the folder was left untouched")
        if written == "dir":
            _write_manifest(tmp, carried)
        if path.is_dir() and not path.is_symlink():  # wholly lenssearch's (checked above): moved aside, then removed
            fd, old_name = tempfile.mkstemp(prefix=_tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
            os.close(fd)
            old = Path(old_name)
            old.unlink()
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None and not (path.exists() or path.is_symlink()):
                os.replace(old, path)  # the previous output back where it was
                old = None
            raise
        _record_in_manifests(path)
    finally:
        for leftover in (tmp, old):
            if leftover is None:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            elif leftover.exists() or leftover.is_symlink():
                leftover.unlink()


# ------------------------------------------------------------------------------------------ strict readers
def _last_line(path: Path, block: int = 65536) -> tuple[bytes, int]:
    """The last line of a file (without its newline) and its 1-based line number (counted in a streaming pass)."""
    n_lines = 0
    last = b""
    with open(path, "rb") as fh:
        for line in fh:
            n_lines += 1
            last = line
    return last, n_lines


def check_text_complete(path: str | Path, what: str = "file") -> None:
    """Raise :class:`~lenssearch.errors.InputFileError` if a text table does not end with a newline.

    Every table lenssearch and astropy write ends with a newline; a file cut while it was written or copied stops
    in the middle of its last row, whose last value may still parse (a Dec of ``-2.19`` cut from ``-2.1934``), so
    the missing newline is the only reliable sign.
    """
    from lenssearch.errors import InputFileError

    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise InputFileError(f"{path}: the {what} is empty (0 bytes)")
        with open(path, "rb") as fh:
            fh.seek(size - 1)
            complete = fh.read(1) == b"\n"
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if not complete:
        last, n_lines = _last_line(path)
        shown = last.decode(errors="replace")
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InputFileError(
            f"{path}: the {what} looks truncated: it ends in the middle of line {n_lines} ('{shown}') without a "
            "newline; copy or write it again (if the file is complete, add a newline at its end)"
        )


def read_ecsv(path: str | Path, what: str = "table"):
    """Read an ECSV table strictly (astropy's pure-Python ECSV reader, no guessing), refusing a truncated file.

    Raises
    ------
    InputFileError
        A missing, unreadable, malformed or truncated file, named with what is wrong.
    """
    from astropy.table import Table

    from lenssearch.errors import InputFileError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such {what}" if not path.exists() else f"{path}: the {what} is not a file")
    check_text_complete(path, what)
    try:
        return Table.read(path, format="ascii.ecsv", guess=False)
    except Exception as exc:  # astropy raises many types for malformed tables
        raise InputFileError(f"{path}: not a readable ECSV {what} ({type(exc).__name__}: {exc})") from None


def fits_open_checked(path: str | Path, what: str = "FITS file", memmap: bool = False, **kwargs):
    """``astropy.io.fits.open`` that refuses a missing, corrupt or truncated file with one clear error.

    Every HDU's header is read and its data checked to lie wholly inside the file (a file cut while it was
    written or copied otherwise opens, then fails with ``TypeError: buffer is too small`` or a reshape error when
    its pixels are read, the file named only in a warning). The caller closes the returned ``HDUList``; see
    :func:`open_fits` for a context manager.

    Raises
    ------
    InputFileError
        Naming the file, ``what`` it is, and what is wrong.
    """
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    from lenssearch.errors import InputFileError

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such {what}")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, expected a {what}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="File may have been truncated", category=AstropyUserWarning)
            hdul = fits.open(path, memmap=memmap, **kwargs)
            hdus = list(hdul)  # reads every header
    except (OSError, TypeError, ValueError, IndexError, KeyError) as exc:
        raise InputFileError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None
    try:
        size = path.stat().st_size
        if not hdus:
            raise InputFileError(f"{path}: not a readable {what} (no HDU)")
        for i, hdu in enumerate(hdus):
            start = int(hdul.fileinfo(i)["datLoc"])
            need = int(hdu.size)
            if start + need > size:
                name = hdu.name or f"#{i}"
                raise InputFileError(
                    f"{path}: the {what} is truncated: HDU {i} ({name}) needs {need} bytes of data but the file "
                    f"ends {start + need - size} bytes short ({size} bytes); copy or write it again"
                )
    except BaseException:
        hdul.close()
        raise
    return hdul


@contextlib.contextmanager
def open_fits(path: str | Path, what: str = "FITS file", memmap: bool = False, **kwargs):
    """:func:`fits_open_checked` as a context manager; errors that astropy raises while the block reads the file
    (``OSError``, ``TypeError``, ``ValueError``) become the same one-line :class:`InputFileError`."""
    from lenssearch.errors import InputFileError, LensSearchError

    hdul = fits_open_checked(path, what, memmap, **kwargs)
    try:
        yield hdul
    except (OSError, TypeError, ValueError) as exc:
        if isinstance(exc, LensSearchError):
            raise
        raise InputFileError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None
    finally:
        hdul.close()


# ---------------------------------------------------------------------------------------------- table columns
#: Unit and description of the columns that lenssearch's output catalogues share (ECSV keeps both in its header).
#: A name not listed keeps what it has; ``score_<model>`` and ``flag_<rule>`` are matched by prefix.
COLUMNS: dict[str, tuple[str | None, str]] = {
    "id": (None, "identifier of the cutout or position"),
    "ra": ("deg", "right ascension (ICRS)"),
    "dec": ("deg", "declination (ICRS)"),
    "x_pix": ("pix", "x of the cutout centre in the field image (0-based)"),
    "y_pix": ("pix", "y of the cutout centre in the field image (0-based)"),
    "score": (None, "lens score of the model (probability-like, in [0, 1])"),
    "probability": (None, "lens probability of the network, out of fold (in [0, 1])"),
    "label": (None, "truth: 1 lens, 0 non-lens"),
    "is_lens": (None, "truth: 1 a (planted or known) lens, 0 not, -1 unknown"),
    "class": (None, "TP/qTP/FN of a lens, FP/TN of a non-lens, at the decision threshold (meta 'threshold') and "
                    "the qTP lower bound (meta 'qtp_lower')"),
    "fold": (None, "cross-validation fold of the cutout (-1: validation split)"),
    "network": (None, "network that scored the cutout"),
    "status": (None, "scored, invalid (failed the cutout checks) or outside (off the image)"),
    "validation": (None, "failed cutout checks, comma-separated (empty: passed)"),
    "kron_radius_arcsec": ("arcsec", "Kron radius of the central source (sep)"),
    "background_sigma": (None, "|background| of the cutout in units of its noise sigma"),
    "detected_fraction": (None, "fraction of the cutout's pixels in detected sources"),
    "masked_fraction": (None, "fraction of the cutout's pixels masked"),
    "inside_fraction": (None, "fraction of the cutout inside the image footprint"),
    "star_distance_arcsec": ("arcsec", "distance to the nearest bright star"),
    "rejected_by": (None, "cleaning rule that rejected the candidate (empty: kept)"),
    "duplicate_of": (None, "id of the higher-ranked candidate this one duplicates (within 2 arcsec)"),
    "kept": (None, "candidate kept after cleaning and duplicate removal"),
    "mag": ("mag", "magnitude (AB)"),
    "theta_e_arcsec": ("arcsec", "Einstein radius"),
    "snr": (None, "signal-to-noise ratio of the lensed arcs"),
    "gate": (None, "gate metric of the model (meta 'gate')"),
    "auc": (None, "area under the ROC curve"),
    "n": (None, "number of rows"),
    "name": (None, "model: a network, or a committee rule(members)"),
    "members": (None, "networks of the committee, '+'-separated"),
    "rule": (None, "how the members' probabilities are combined: mean, product (or single)"),
    "stage": (None, "stage of the search"),
    # knowledge-base cutouts (mocks, non-lenses, planted lenses: simulate/inject.py, simulate/negatives.py)
    "field": (None, "field the cutout was cut from"),
    "member_id": (None, "cluster member at the cutout centre (the lens of a mock)"),
    "line_id": (None, "secondary critical line of the member used for the mock (-1: none, isolated lens)"),
    "z_lens": (None, "redshift of the lens (the cluster)"),
    "theta_e_catalogue_arcsec": ("arcsec", "Einstein radius of the line in the critical-line catalogue"),
    "z_s_catalogue": (None, "source redshift of that critical-line catalogue"),
    "z_s": (None, "source redshift"),
    "source_young_fraction": (None, "share of the source's F814W light in a young flat-f_nu burst (0: the template)"),
    "source_re_kpc": ("kpc", "source Sersic effective radius"),
    "source_re_arcsec": ("arcsec", "source Sersic effective radius"),
    "sersic_n": (None, "Sersic index"),
    "axis_ratio": (None, "axis ratio b/a"),
    "position_angle_deg": ("deg", "position angle of the major axis"),
    "source_x_arcsec": ("arcsec", "source centre, x in the lens model frame"),
    "source_y_arcsec": ("arcsec", "source centre, y in the lens model frame"),
    "magnification": (None, "total magnification of the source (inside and outside the cutout)"),
    "magnification_in_cutout": (None, "magnification of the source counting the flux inside the cutout"),
    "n_images": (None, "images of the source centre"),
    "n_images_in_cutout": (None, "images of the source centre inside the cutout"),
    "lens_mag_F814W": ("mag", "F814W magnitude (AB) of the lens member"),
    "lens_color_F606W_F814W": ("mag", "F606W - F814W colour of the lens member"),
    "lensed_snr": (None, "matched-filter S/N of the noiseless lensed source, bands in quadrature"),
    "arc_peak_sigma": (None, "brightest pixel of the noiseless PSF-convolved lensed source / background sigma"),
    "environment": (None, "cluster (member in the cluster's deflection) or isolated (member as a field SIE + shear)"),
    "isolated_shear_gamma": (None, "external shear of an isolated lens"),
    "confuser": (None, "lens, plain (member cutout) or the hard-negative kind"),
    "confuser_mag_F814W": ("mag", "F814W magnitude (AB) of the added confuser"),
    "confuser_x_arcsec": ("arcsec", "confuser position from the cutout centre, x"),
    "confuser_y_arcsec": ("arcsec", "confuser position from the cutout centre, y"),
    "cutout_ra": ("deg", "right ascension of the cutout centre (ICRS)"),
    "cutout_dec": ("deg", "declination of the cutout centre (ICRS)"),
    "cutout_row0": ("pix", "first row of the cutout in the field image (0-based)"),
    "cutout_col0": ("pix", "first column of the cutout in the field image (0-based)"),
    # field catalogues (fields/: members.ecsv, stars.ecsv, field_galaxies.ecsv, critical_lines_zs<z>.ecsv)
    "x_arcsec": ("arcsec", "x from the field centre (lens model frame)"),
    "y_arcsec": ("arcsec", "y from the field centre (lens model frame)"),
    "x_model": ("arcsec", "x in the lens model frame"),
    "y_model": ("arcsec", "y in the lens model frame"),
    "z": (None, "redshift"),
    "re_arcsec": ("arcsec", "Sersic effective radius"),
    "sigma_kms": ("km / s", "dPIE velocity dispersion (LensTool sigma)"),
    "core_radius_arcsec": ("arcsec", "dPIE core radius"),
    "cut_radius_arcsec": ("arcsec", "dPIE cut radius"),
    "emass": (None, "ellipticity of the mass (LensTool emass)"),
    "is_bcg": (None, "brightest cluster galaxy"),
    "halo": (None, "cluster-scale halo the member belongs to"),
    "star_id": (None, "identifier of the star"),
    "galaxy_id": (None, "identifier of the field galaxy"),
    "kind": (None, "kind of object"),
    "bulge_fraction": (None, "bulge-to-total flux ratio"),
    "n_arms": (None, "number of spiral arms"),
    "pitch_deg": ("deg", "pitch angle of the spiral arms"),
    "arm_amplitude": (None, "relative amplitude of the spiral arms"),
    "arm_phase_rad": ("rad", "phase of the spiral arms"),
    "x": ("arcsec", "x of the critical line's centre (lens model frame)"),
    "y": ("arcsec", "y of the critical line's centre (lens model frame)"),
    "member_x": ("arcsec", "x of the member (lens model frame)"),
    "member_y": ("arcsec", "y of the member (lens model frame)"),
    "member_inside": (None, "the member lies inside its critical line"),
    "area_arcsec2": ("arcsec2", "area enclosed by the critical line"),
    "caustic_area_arcsec2": ("arcsec2", "area enclosed by the caustic"),
    "n_vertices": (None, "vertices of the critical-line polygon"),
    # tables (evaluation, known lenses, search counts, validation)
    "row": (None, "row of the table (bin or class, as in Angora et al. 2023, Appendix A)"),
    "nonlens": (None, "bin of the non-lenses (Table A.4)"),
    "lens": (None, "bin of the lenses (Table A.5)"),
    "variant": (None, "KB ground-truth variant"),
    "n_lenses": (None, "number of lenses"),
    "n_nonlenses": (None, "number of non-lenses"),
    "TP": (None, "lenses with p >= threshold"),
    "qTP": (None, "lenses with qtp_lower <= p < threshold"),
    "FN": (None, "lenses with p < qtp_lower"),
    "n_secure": (None, "secure lenses"),
    "rejected": (None, "positions removed at this stage"),
}
#: The lens parameters of a mock (simulate/truth.py) and of a modeling network's prediction (modeling/):
#: ``<name>`` the truth, ``pred_<name>`` the predicted mean, ``sigma_<name>`` its 1-sigma uncertainty.
LENS_PARAMETERS: dict[str, tuple[str | None, str]] = {
    "lens_x_arcsec": ("arcsec", "lens mass centre from the cutout centre, x (along the columns, West)"),
    "lens_y_arcsec": ("arcsec", "lens mass centre from the cutout centre, y (along the rows, North)"),
    "theta_e_arcsec": ("arcsec", "Einstein radius (equivalent radius of the tangential critical line at z_s)"),
    "lens_e1": (None, "lens mass ellipticity e1 = (1 - q)/(1 + q) cos 2phi"),
    "lens_e2": (None, "lens mass ellipticity e2 = (1 - q)/(1 + q) sin 2phi"),
    "shear_gamma1": (None, "external shear gamma1 at the lens for the source's redshift"),
    "shear_gamma2": (None, "external shear gamma2 at the lens for the source's redshift"),
}
COLUMNS.update(LENS_PARAMETERS)
COLUMNS.update({f"pred_{k}": (u, f"predicted {d}") for k, (u, d) in LENS_PARAMETERS.items()})
COLUMNS.update({f"sigma_{k}": (u, f"1-sigma uncertainty of the predicted {d}") for k, (u, d) in LENS_PARAMETERS.items()})
COLUMNS.update({
    "kappa_ext": (None, "convergence of all masses but the lens at its centre, for the source's redshift"),
    "lens_q": (None, "axis ratio b/a of the lens mass"),
    "lens_angle_deg": ("deg", "position angle of the lens mass's major axis, counter-clockwise from +x"),
    "modeling_rejected": (None, "the modeling network's uncertainties exceed the cuts (a likely non-lens)"),
    "modeling_rejected_by": (None, "parameters whose predicted sigma exceeds its cut ('+'-separated)"),
})
PREFIXES: dict[str, tuple[str | None, str]] = {
    "score_": (None, "lens score of committee member {}"),
    "flag_": (None, "cleaning rule {} flags the candidate"),
    "p_": (None, "lens probability of network {}"),
    "mag_": ("mag", "magnitude (AB) in {}"),
    "tpr_at_fpr_": (None, "true-positive rate at a false-positive rate of {} (NaN: not measurable, FPR < 1/N_neg)"),
    "lensed_snr_": (None, "matched-filter S/N of the noiseless lensed source in {}"),
    "source_mag_": ("mag", "intrinsic (unlensed) source magnitude (AB) in {}"),
    "noise_sigma_": (None, "background noise sigma per pixel in {} (e-/s)"),
    "class_": (None, "TP/qTP/FN class given by model {}"),
    "disc_colour_": ("mag", "disc colour (AB) in {} relative to F814W"),
    "bulge_colour_": ("mag", "bulge colour (AB) in {} relative to F814W"),
}
#: Per-network columns of the evaluation tables: ``<network>_<suffix>`` (and ``<stat>_<network>``) -> description.
PATTERNS: tuple[tuple[str, str | None, str], ...] = (
    (r"^(?P<n>\w+?)_fp_over_tn$", None, "false positives / true negatives of {n} in the bin"),
    (r"^(?P<n>\w+?)_fn_over_tp$", None, "false negatives / true positives of {n} in the bin"),
    (r"^(?P<n>\w+?)_fp_rate$", None, "false-positive rate of {n} in the bin"),
    (r"^(?P<n>\w+?)_fn_rate$", None, "false-negative rate of {n} in the bin"),
    (r"^(?P<n>\w+?)_fp$", None, "false positives of {n} in the bin"),
    (r"^(?P<n>\w+?)_fn$", None, "false negatives of {n} in the bin"),
    (r"^(?P<n>\w+?)_clean$", None, "metric of {n} without the adversarial examples (Table A.1)"),
    (r"^(?P<n>\w+?)_completeness$", None, "completeness of {n} in the arc-S/N bin"),
    (r"^(?P<n>\w+?)_auc$", None, "AUC of {n}: the bin's lenses against all non-lenses"),
    (r"^(?P<n>\w+?)_n$", None, "lenses of the bin in {n}'s bands"),
    (r"^median_(?P<n>\w+)$", None, "median over the folds of the metric of {n}"),
    (r"^q1_(?P<n>\w+)$", None, "first quartile over the folds of the metric of {n}"),
    (r"^q3_(?P<n>\w+)$", None, "third quartile over the folds of the metric of {n}"),
    (r"^iqr_(?P<n>\w+)$", None, "inter-quartile range over the folds of the metric of {n}"),
    (r"^whisker_low_(?P<n>\w+)$", None, "lower whisker (Q1 - 1.5 IQR, clipped to the data) of {n}"),
    (r"^whisker_high_(?P<n>\w+)$", None, "upper whisker (Q3 + 1.5 IQR, clipped to the data) of {n}"),
)
#: Networks whose name alone is a column (Tables A.1, A.3): the metric in the row, for that network.
NETWORK_COLUMNS = ("vgg", "sc_vgg", "resnet", "f435w", "f606w", "f814w")


def column_info(name: str) -> tuple[str | None, str] | None:
    """``(unit, description)`` of a known column name (:data:`COLUMNS`, :data:`PREFIXES`, :data:`PATTERNS`)."""
    info = COLUMNS.get(name)
    if info is None:
        prefix = next((p for p in PREFIXES if name.startswith(p)), None)
        if prefix is not None:
            unit, text = PREFIXES[prefix]
            info = (unit, text.format(name[len(prefix):]))
    if info is None:
        for pattern, unit, text in PATTERNS:
            match = re.match(pattern, name)
            if match:
                return unit, text.format(**match.groupdict())
    if info is None and name in NETWORK_COLUMNS:
        info = (None, f"the row's metric for network {name}")
    return info


def describe_columns(table, provenance: dict | None = None):
    """Give ``table``'s known columns their unit and description (:data:`COLUMNS`), and add ``provenance`` (the
    model version, threshold, run id it came from) to its meta; returns the table."""
    for name in table.colnames:
        info = column_info(name)
        if info is None:
            continue
        unit, description = info
        column = table[name]
        if unit is not None and getattr(column, "unit", None) is None and column.dtype.kind in "fiu":
            column.unit = unit
        if not getattr(column.info, "description", None):
            column.info.description = description
    if provenance:
        table.meta.update({k: v for k, v in provenance.items() if v is not None})
    return table
