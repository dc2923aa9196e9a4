"""Search: score a field (or a stack of cutouts) with the champion model, clean false positives, and report.

The procedure of HOLISMOKES XVI (Schuldt et al. 2025, Sect. 3-4), one module per step (:mod:`.pipeline` lists
them): a field directory (one FITS image per band with a common WCS, plus a catalogue of positions or the sources
that ``sep`` detects) or a stack of cutouts in; a ranked candidate catalogue, the per-position table
(``scores.parquet``), an HTML gallery, per-stage counts (their Table 1) and metrics out.

Modules
-------
sources, inputs, catalogues
    What a search reads: :func:`sources.open_input`; memory-mapped band images and cutout stacks; catalogues of
    positions, sep detections, known and planted lenses.
batch
    Steps 1-3 for one batch: cut, check, score (fixed batch shape), measure the candidates: the one function that
    both engines run.
checks
    The KB's per-cutout checks (shared with :mod:`lenssearch.kb.validation`) and its great-expectations suite.
scoring
    Load a registered model or committee (``models:/...``) and score batches; member scores where exposed.
results
    Step 4: per-position results chunk by chunk (great-expectations per chunk, truth) into Parquet.
catalogue
    Steps 5-8: candidates, cleaning, duplicates, classes, counts, the catalogue and the metrics.
cleaning, classes, gallery
    HOLISMOKES XVI's false-positive rules and duplicates; Angora et al. (2023) Table A.6 classes; the gallery.
pipeline, known, ray_engine
    ``run_search`` (local engine), ``run_known_lenses``, and ``--engine ray`` on Ray Data.
demo
    The held-out synthetic field of the demo search.
"""
