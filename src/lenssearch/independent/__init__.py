"""The independent test stage (issue 13): a test set simulated with a code and a recipe of its own, never trained on.

- :mod:`lenssearch.independent.simulate` (``lenssearch independent simulate``, DVC stage ``independent-set``):
  galaxy-scale lenses rendered with lenstronomy (SIE + external shear, elliptical Sersic lens light and source,
  HST-like PSFs and noise) and non-lenses of the confuser kinds (early-type galaxies with or without blue
  neighbours, spirals, edge-on discs, pairs and mergers, rings, stars); each lens's arc S/N is recorded.
- :mod:`lenssearch.independent.score` (``lenssearch independent score``, DVC stage ``independent``): scores the
  set with every registered network, committee and the champion: AUC overall and by arc-S/N bin, TPR at fixed
  false-positive rates, and the false-positive rate of each confuser kind; logged to MLflow.

Nothing of the knowledge base's simulation (``simulate/``, ``fields/`` cluster fields, LensTool models) is used to
make the set, apart from the ACS zero points, the depth -> noise conversion and the empirical F814W PSF, which are
properties of the instrument rather than of the recipe.
"""
