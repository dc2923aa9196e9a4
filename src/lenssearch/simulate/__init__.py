"""Mock galaxy-galaxy strong lenses and non-lens cutouts (Angora et al. 2023, Sect. 3.1-3.2).

- :mod:`~lenssearch.simulate.sources`: the background-source population (F814W number counts, p(z|m), sizes,
  Sersic shapes) and its colours (:mod:`~lenssearch.simulate.colours`, a star-forming SED through the ACS
  throughputs with intergalactic absorption).
- :mod:`~lenssearch.simulate.render`: the fast renderer: ray-traced Sersic with sub-pixel sampling, per-band
  PSF convolution with cached FFTs.
- :mod:`~lenssearch.simulate.local`: the deflection field around one cluster member (near components exact,
  the rest interpolated from the field's deflection map), its critical line and caustic at any source redshift.
- :mod:`~lenssearch.simulate.inject`: the ``simulate`` stage (mocks at secondary caustics).
- :mod:`~lenssearch.simulate.negatives`: the ``negatives`` stage (member cutouts without injection).
"""
