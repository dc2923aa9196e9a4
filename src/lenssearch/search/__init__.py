"""Search: score a field (or a stack of cutouts) with the champion model, clean false positives, and report.

The stage reads a field directory (one FITS image per band with a common WCS, plus a catalogue of positions or the
sources that ``sep`` detects) or a stack of cutouts (FITS cube or HDF5), and writes a ranked candidate catalogue,
an HTML gallery, per-stage counts (the analogue of HOLISMOKES XVI's Table 1) and metrics for ``dvc metrics``.

Modules
-------
inputs
    Open and check the inputs (band images memory-mapped, WCS alignment, catalogues, cutout stacks) and stream
    them as batches of cutouts of bounded size.
validation
    Per-cutout checks before scoring (shape, finite pixels, band coverage, plausible noise).
scoring
    Load a registered model or committee (``models:/...``) and score batches; member scores where exposed.
cleaning
    HOLISMOKES XVI (Schuldt et al. 2025, Sect. 3.1 and 4) false-positive rules and duplicate removal.
classes
    Angora et al. (2023, Sect. 5, Table A.6) probability bands: TP, qTP, FN.
gallery
    HTML gallery of Lupton RGB stamps sorted by score.
pipeline
    ``run_search`` and ``run_known_lenses``: the two verbs' pure functions.
"""
