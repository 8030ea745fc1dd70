"""Lazy package namespaces (nrsfm_kit.utils.lazy): every public name importable, topic CLIs without torch."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import pytest

from nrsfm_kit.utils.lazy import lazy_exports

LAZY_PACKAGES = ["nrsfm", "edm", "data", "data.render", "graph", "metrics", "models", "geometry", "viz", "train",
                 "utils"]
TOPIC_CLIS = ["data", "graph", "nrsfm", "edm"]


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_public_name_imports(name):
    pkg = importlib.import_module(f"nrsfm_kit.{name}")
    assert pkg.__all__ and len(set(pkg.__all__)) == len(pkg.__all__)
    for attr in pkg.__all__:
        exec(f"from nrsfm_kit.{name} import {attr}", {})  # the form users write
        value = getattr(pkg, attr)
        assert not isinstance(value, types.ModuleType), f"nrsfm_kit.{name}.{attr} is a module"
        assert attr in dir(pkg)


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_submodules_are_listed_and_unknown_names_raise(name):
    pkg = importlib.import_module(f"nrsfm_kit.{name}")
    assert {info.name for info in pkgutil.iter_modules(pkg.__path__)} <= set(dir(pkg))
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        pkg.no_such_name  # noqa: B018


@pytest.mark.parametrize("name, sub", [("graph", "io"), ("edm", "priors"), ("metrics", "nrsfm"), ("data", "render")])
def test_submodules_load_on_attribute_access(name, sub):
    pkg = importlib.import_module(f"nrsfm_kit.{name}")
    assert getattr(pkg, sub) is importlib.import_module(f"nrsfm_kit.{name}.{sub}")


def test_a_name_equal_to_its_submodule_stays_the_function():
    """``nrsfm_kit.nrsfm.msr`` and ``nrsfm_kit.geometry.edm`` are functions, whichever is imported first."""
    code = ("import nrsfm_kit.nrsfm.msr, nrsfm_kit.geometry.edm, nrsfm_kit.geometry.procrustes; "
            "from nrsfm_kit.nrsfm import msr; from nrsfm_kit.geometry import edm, procrustes; import nrsfm_kit; "
            "print(callable(msr), callable(edm), callable(procrustes), callable(nrsfm_kit.nrsfm.msr), "
            "msr.__module__)")
    assert _run(code) == "True True True True nrsfm_kit.nrsfm.msr"
    code = "from nrsfm_kit.geometry import edm, gram; import sys; print(callable(edm), 'nrsfm_kit.geometry.edm' in sys.modules)"
    assert _run(code) == "True True"


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_importing_a_package_imports_nothing_heavy(name):
    code = f"import sys, nrsfm_kit.{name}; print(sorted(m for m in ('torch', 'warp', 'open3d', 'cv2') if m in sys.modules))"
    assert _run(code) == "[]"


@pytest.mark.parametrize("name", TOPIC_CLIS)
def test_topic_cli_imports_no_torch(name):
    code = (f"import sys, nrsfm_kit.{name}.cli; "
            "print(sorted(m for m in ('torch', 'warp', 'open3d', 'cv2', 'scipy') if m in sys.modules))")
    assert _run(code) == "[]"


def test_lazy_exports_rejects_a_name_listed_twice():
    with pytest.raises(ValueError, match="exports: expected each name once, found 'check_tensor'"):
        lazy_exports("nrsfm_kit.utils", {"checks": ["check_tensor"], "io": ["check_tensor"]})
