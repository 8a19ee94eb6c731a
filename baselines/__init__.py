"""Baseline networks, one file per family; importing this package registers them.

The harness imports this package through the ``bench.methods`` entry point.
"""

from baselines import resnet, unet  # noqa: F401  (imported for their registrations)
