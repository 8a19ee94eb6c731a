"""The suite's own joint methods; importing this package registers them.

* ``joint_model`` — the MS/NMOSD joint model of seed 000 (Huang et al. 2024) with every ablation switch
  (:mod:`methods.joint`).

The harness imports this package through the ``bench.methods`` entry point.
"""

from methods import joint  # noqa: F401  (registers joint_model)
