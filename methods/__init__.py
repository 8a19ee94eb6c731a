"""The suite's own joint methods; importing this package registers them.

* ``joint_model`` — the MS/NMOSD joint model of the joint-model paper (Huang et al. 2024) with every ablation switch
  (:mod:`methods.joint`).
* ``uml`` — UML, the uncertainty-informed mutual learning network of the UML paper (Ren et al. 2023) with its
  Table 3 switches (:mod:`methods.uml`).

The harness imports this package through the ``bench.methods`` entry point.
"""

from methods import joint, uml  # noqa: F401  (register joint_model and uml)
