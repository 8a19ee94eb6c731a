"""Baseline networks, one file per family; importing this package registers them.

Segmentation: ``unet3d``, ``vnet``, ``attention_unet``, ``unetr`` (the 3D stand-in for TransUNet),
``tbrats`` (evidential). Classification: ``resnet34/50/101/152``, ``densenet121``, ``senet50``, ``ec``
(evidential). Joint: ``bcs``, ``dsi_net``.

The harness imports this package through the ``bench.methods`` entry point.
"""

from baselines import (  # noqa: F401  (imported for their registrations)
    attention_unet,
    bcs,
    densenet,
    dsi_net,
    ec,
    resnet,
    senet,
    tbrats,
    unet,
    unetr,
    vnet,
)
