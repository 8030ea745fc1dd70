"""Offline assets the book and the slides ship: MathJax 2.7 (from the ``jupyter_server_mathjax`` package) and
plotly.js (from the installed ``plotly`` package). Neither is downloaded: both come with ``pip install
'nrsfm-kit[book]'``."""

from __future__ import annotations

from pathlib import Path


def mathjax_dir() -> Path:
    """The folder holding ``MathJax.js`` (MathJax 2.7) shipped by ``jupyter_server_mathjax``.

    Raises:
        FileNotFoundError: the package is not installed, or holds no ``static/MathJax.js``.
    """
    try:
        import jupyter_server_mathjax
    except ImportError as err:
        raise FileNotFoundError("MathJax: expected the jupyter_server_mathjax package (pip install "
                                "'nrsfm-kit[book]'), found it not installed") from err
    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (folder / "MathJax.js").is_file():
        raise FileNotFoundError(f"MathJax: expected {folder / 'MathJax.js'}, found none")
    return folder


def plotly_js() -> Path:
    """``plotly.min.js`` shipped by the installed ``plotly`` package.

    Raises:
        FileNotFoundError: the file is not in the package.
    """
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly.js: expected {path} in the installed plotly package, found none")
    return path
