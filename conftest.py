"""Root conftest: plugins for every pytest run in the repository (tests/ and notebooks/).

- :mod:`nrsfm_kit.course.nbrecord`: with ``NRSFM_KIT_RECORD_NOTEBOOKS=DIR`` set, the notebooks nbval executes are
  written to ``DIR/<name>.ipynb`` with their outputs (the book is then built from them: ``make test``); without the
  variable it does nothing.
"""

pytest_plugins = ["nrsfm_kit.course.nbrecord"]
