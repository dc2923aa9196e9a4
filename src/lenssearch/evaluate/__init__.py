"""Evaluation of the trained networks: Angora et al. 2023 (Sect. 4, Appendix A) and HOLISMOKES XVI (Sect. 2).

- :mod:`~lenssearch.evaluate.metrics`: confusion-matrix metrics, ROC, TPR at FPR ("not measurable" below
  1/N_neg), purity/completeness curves, fold statistics, gate metrics.
- :mod:`~lenssearch.evaluate.lts`: robust line fit with intrinsic scatter (LTS_LINEFIT, Cappellari et al. 2013)
  for the red sequence.
- :mod:`~lenssearch.evaluate.tables`, :mod:`~lenssearch.evaluate.figures`, :mod:`~lenssearch.evaluate.report`:
  Tables A.1-A.5, Figs. 6, 8, 9, 11, A.1 and the report beside the published values
  (``angora2023_tables.yaml``).
- :mod:`~lenssearch.evaluate.committee`: committees by mean or product; ``committee_model.py`` is their MLflow
  pyfunc model (models from code).
- :mod:`~lenssearch.evaluate.thresholds`: Optuna-tuned thresholds and qTP band.
- the MLflow side (runs, committee model, registry alias ``champion``) is :mod:`lenssearch.tracking`.
- :mod:`~lenssearch.evaluate.stages`: the ``evaluate``, ``committee``, ``tune``, ``promote`` stages and
  :mod:`~lenssearch.evaluate.hpsearch` the hyper-parameter search entry point.
"""
