# nrsfm-kit: two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nrsfm-kit-installed
SYSTEM_LIBS := libgl1 libgomp1 libusb-1.0-0
# pytest workers (2 cores here); notebooks stay whole on one worker (--dist loadfile)
WORKERS ?= 2

.PHONY: install demo test unit unit-threads notebooks lint lab bench gpu-check clean system-libs browser book student solutions slides

install: $(STAMP)

# Open3D loads libGL, libgomp and libusb at import time.
system-libs:
	@missing=""; \
	ldconfig -p | grep -q 'libGL.so.1' || missing="$$missing libgl1"; \
	ldconfig -p | grep -q 'libgomp.so.1' || missing="$$missing libgomp1"; \
	ldconfig -p | grep -q 'libusb-1.0.so.0' || missing="$$missing libusb-1.0-0"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing system libraries for Open3D:$$missing"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Open3D needs system libraries that are missing:$$missing"; \
	    echo "run: sudo apt-get install -y $(SYSTEM_LIBS)"; exit 1; \
	  fi; \
	fi

# The stamp is keyed on pyproject.toml: a second `make install` with nothing changed is a no-op.
$(STAMP): pyproject.toml | system-libs
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "nrsfm-kit needs Python >= 3.10, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch==2.13.0 is a local CPU wheel; a looser requirement would pull a multi-GB CUDA build
	@$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all]"
	@# Open3D pulls in dash, whose old-style JupyterLab source extension makes JupyterLab open with a "Build
	@# Recommended" prompt that nrsfm-kit does not need: turn JupyterLab's build check off in this venv's page config
	@$(PY) -c 'import json, pathlib, sys; p = pathlib.Path(sys.prefix, "etc/jupyter/labconfig/page_config.json"); \
	  c = json.loads(p.read_text()) if p.exists() else {}; c["buildCheck"] = False; \
	  p.parent.mkdir(parents=True, exist_ok=True); p.write_text(json.dumps(c, indent=2))'
	@touch $(STAMP)

demo: install
	$(VENV)/bin/nrsfm-kit demo --out build/demo

lint: install
	$(VENV)/bin/ruff check .

unit: install
	NRSFM_KIT_SMOKE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -n $(WORKERS) --dist loadfile tests --ignore=tests/book

# the unit tests once more in ONE process with the default thread settings (users' configuration: OpenMP with
# every available CPU); catches crashes that only multi-threaded native code shows (issue 14, oneDNN#6035). The
# reliability tests (kill-and-resume children run single-threaded by design; bad inputs and properties are not
# about threading), the multi-process tests (their workers run single-threaded) and the course-kit tests (they
# drive notebook kernels, book and slide builds: no native threading of ours) are left out here
unit-threads: install
	env -u OMP_NUM_THREADS -u MKL_NUM_THREADS NRSFM_KIT_THREADS=auto NRSFM_KIT_SMOKE=1 $(PY) -m pytest -p no:xdist -q tests --ignore=tests/reliability --ignore=tests/train/test_distributed.py --ignore=tests/train/test_distributed_methods.py --ignore=tests/book --ignore=tests/course --ignore=tests/test_notebook_setup.py

notebooks: install
	NRSFM_KIT_SMOKE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -n $(WORKERS) --dist loadfile --nbval-lax --nbval-current-env notebooks

# ruff; unit tests and every notebook under nbval in one pytest run (the executed notebooks recorded into
# build/executed); then the book at smoke size from those notebooks, checked, and in headless Chromium (tests/book)
EXECUTED := $(CURDIR)/build/executed
test: install
	$(VENV)/bin/ruff check .
	rm -rf $(EXECUTED)
	NRSFM_KIT_RECORD_NOTEBOOKS=$(EXECUTED) NRSFM_KIT_SMOKE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -n $(WORKERS) --dist loadfile --nbval-lax --nbval-current-env tests notebooks --ignore=tests/book
	NRSFM_KIT_BOOK_EXECUTED=$(EXECUTED) NRSFM_KIT_SMOKE=1 OMP_NUM_THREADS=1 $(PY) -m pytest -p no:xdist -q tests/book

# the course kit (nrsfm_kit.course): the static book (executes every notebook: teaching size, or smoke size with a
# banner under NRSFM_KIT_SMOKE=1), student / instructor versions of the exercises, reveal.js slides; all offline
# headless Chromium for the book's browser check: installed with apt-get as root, else the command to run is printed
browser:
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && [ -z "$$NRSFM_KIT_CHROMIUM" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for the book's browser check"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the book's browser check needs headless Chromium: run sudo apt-get install -y chromium (or set NRSFM_KIT_CHROMIUM)"; exit 1; \
	  fi; \
	fi

book: install browser
	$(PY) -m nrsfm_kit.course book --out build/book --browser

student: install
	$(PY) -m nrsfm_kit.course student --out build/student

solutions: install
	$(PY) -m nrsfm_kit.course solutions --out build/solutions

slides: install
	$(PY) -m nrsfm_kit.course slides --out build/slides

lab: install
	$(VENV)/bin/jupyter lab notebooks/

bench: install
	$(PY) benchmarks/run_all.py

# on a lent GPU: kernel parity (float32/float64) + the benchmarks' GPU rows, summary in $OUT or build/gpu_check
gpu-check: install
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf build .pytest_cache .ruff_cache $(VENV) *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
