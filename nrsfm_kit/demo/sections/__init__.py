"""Demo sections, one module per topic (see :mod:`nrsfm_kit.demo`)."""
