"""The course kit: the static book, student / solution versions of the notebooks' exercises, lecture slides.

``python -m nrsfm_kit.course book|student|solutions|slides ...`` (the Makefile's ``make book``, ``make student``,
``make solutions``, ``make slides``):

- :mod:`nrsfm_kit.course.book`: every notebook in reading order as a static HTML book (Sphinx + myst-nb), plotly
  figures interactive, equations rendered by a MathJax copy inside the book (offline), a landing page.
- :mod:`nrsfm_kit.course.assignments`: the exercise convention (nbgrader-compatible cell metadata) and the
  student / solution versions.
- :mod:`nrsfm_kit.course.slides`: reveal.js slides from the cells tagged for slides, offline.
"""
