"""Network building blocks shared by the baselines and the suite's methods: convolution / residual /
separable blocks with a named normalisation (:mod:`bench.nn.blocks`) and width scaling of channel counts
(:mod:`bench.nn.widths`). The harness (``bench/``) never imports them; models do."""
