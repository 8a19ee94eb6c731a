"""bench: the harness of the joint lesion-segmentation + disease-classification benchmark suite.

The harness never imports a specific model: `baselines`, `methods` and users' packages register
methods through the ``bench.methods`` entry-point group (see :mod:`bench.registry`).
"""

__version__ = "0.1.0"
