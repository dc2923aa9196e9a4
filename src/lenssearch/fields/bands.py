"""Which band a FITS image is, from its header: a check that the images are given in the right band order.

HST images name their filter in ``FILTER`` (WFC3, and the images lenssearch writes), or ``FILTER1``/``FILTER2``
(ACS, one of the two wheels usually ``CLEAR1L``/``CLEAR2S``), and give the pivot wavelength of the bandpass in
``PHOTPLAM`` (Angstrom). :func:`check_band_keywords` refuses an image whose keywords name another filter than the
band it is given as, or whose pivot wavelength is nearer another band of the search than its own; an image
without these keywords is accepted as given. The CLI's ``--ignore-band-keywords`` (and ``field.user[]``'s
``ignore_band_keywords``) skips the check, e.g. for images whose headers are known to be wrong.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Optional, Sequence

from lenssearch.errors import InputFileError

#: Header keywords that may name the filter of an image.
FILTER_KEYWORDS = ("FILTER", "FILTER1", "FILTER2")

#: WFC3/IR filters, whose three digits are tens of nanometres (F160W: 1600 nm); elsewhere they are nanometres.
IR_FILTERS = frozenset({"F098M", "F105W", "F110W", "F125W", "F126N", "F127M", "F128N", "F130N", "F132N", "F139M",
                        "F140W", "F153M", "F160W", "F164N", "F167N"})


class BandMismatchError(InputFileError):
    """An image whose header says it is another band than the one it is given as."""


def nominal_wavelength_angstrom(band: str) -> Optional[float]:
    """The wavelength that an HST filter name encodes (F814W: 8140 A, F160W: 16000 A), or None if not a filter."""
    m = re.fullmatch(r"F(\d{3,4})(W|LP|M|N|X|WN)?", band.strip().upper())
    if m is None:
        return None
    value = float(m.group(1))
    return value * 100.0 if band.strip().upper() in IR_FILTERS else value * 10.0


def header_filters(*headers: Optional[Mapping]) -> list[str]:
    """Filter names in the headers (``FILTER``, ``FILTER1``, ``FILTER2``), without the clear wheel positions."""
    names: list[str] = []
    for header in headers:
        if header is None:
            continue
        for key in FILTER_KEYWORDS:
            value = header.get(key)
            if not isinstance(value, str):
                continue
            value = value.strip().upper()
            if not value or value.startswith("CLEAR") or value in ("N/A", "NONE", "OPEN", "BLANK"):
                continue
            if value not in names:
                names.append(value)
    return names


def header_pivot(*headers: Optional[Mapping]) -> Optional[float]:
    """``PHOTPLAM`` (Angstrom) of the first header that has a positive one."""
    for header in headers:
        if header is None:
            continue
        value = header.get("PHOTPLAM")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def check_band_keywords(path: str | Path, band: str, bands: Sequence[str], *headers: Optional[Mapping]) -> None:
    """Refuse an image given as ``band`` whose header keywords say it is another band.

    Parameters
    ----------
    path
        The image file, named in the error.
    band
        The band the image is given as; ``bands``: all the bands of the search (for the pivot-wavelength test).
    headers
        The image HDU's header, then the primary header (ACS keeps ``FILTER1``/``FILTER2`` there).

    Raises
    ------
    BandMismatchError
        Naming the file, the band it was given as, and the keyword that disagrees.
    """
    band_u = band.strip().upper()
    hint = "check the band order of the images (or pass --ignore-band-keywords if the header is wrong)"
    filters = header_filters(*headers)
    if filters and band_u not in filters:
        raise BandMismatchError(
            f"{path}: given as band {band}, but its header names filter {'/'.join(filters)} "
            f"({', '.join(FILTER_KEYWORDS)}); {hint}"
        )
    pivot = header_pivot(*headers)
    if pivot is None:
        return
    nominal = {b: nominal_wavelength_angstrom(b) for b in bands}
    if nominal.get(band) is None or any(v is None for v in nominal.values()):
        return
    nearest = min(nominal, key=lambda b: abs(nominal[b] - pivot))
    if nearest != band:
        raise BandMismatchError(
            f"{path}: given as band {band}, but its pivot wavelength PHOTPLAM = {pivot:.0f} A is that of {nearest} "
            f"(~{nominal[nearest]:.0f} A), not {band} (~{nominal[band]:.0f} A); {hint}"
        )
