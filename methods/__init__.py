"""The suite's own joint methods (the MS/NMOSD joint model, UML); importing this package registers them.

The harness imports this package through the ``bench.methods`` entry point. The methods arrive with
their own issues; until then this package registers nothing.
"""
