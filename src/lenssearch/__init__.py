"""lenssearch: find galaxy-scale strong gravitational lenses in multi-band imaging with deep networks.

Subpackages follow the pipeline (``dvc.yaml``) and the verbs of the ``lenssearch`` command line:
``lensing`` (cosmology, mass profiles, LensTool models, deflection maps, critical lines), ``fields``,
``simulate``, ``kb``, ``models``, ``train``, ``evaluate`` and ``search``.
"""

__version__ = "0.1.0"
