"""Lazy package namespaces (PEP 562): a package lists its public names, submodules load on first use.

A package ``__init__`` declares which submodule defines each public name and ends with::

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {
        "loss": ["EDMLossConfig", "edm_view_pair_loss"],
        "priors": ["PRIORS", "edm_from_depth", "sampled_edm"],
    })

``from nrsfm_kit.edm import EDMLossConfig`` then imports ``nrsfm_kit.edm.loss`` on that line only, and
``import nrsfm_kit.edm.cli`` imports nothing heavy (no torch). Submodules stay reachable as attributes
(``nrsfm_kit.edm.priors``), and every resolved name is cached in the package namespace.

A public name may equal the name of its own submodule (``nrsfm_kit.nrsfm.msr`` is the function ``msr`` of
``nrsfm_kit/nrsfm/msr.py``, as it was with eager imports). Importing such a submodule makes Python bind the
submodule object to the package attribute; for those packages the package's class is swapped for
:class:`_LazyPackage`, which binds the public name instead, so the function keeps winning.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types
from collections.abc import Callable, Iterable, Mapping


class _LazyPackage(types.ModuleType):
    """A package whose public names shadow submodules of the same name (see the module docstring)."""

    def __setattr__(self, name: str, value) -> None:
        shadowed = self.__dict__.get("_lazy_shadowed", {})
        if name in shadowed and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            value = getattr(importlib.import_module(f"{self.__name__}.{shadowed[name]}"), name)
        super().__setattr__(name, value)


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """PEP 562 ``(__getattr__, __dir__, __all__)`` for the package ``package`` (its ``__name__``).

    Args:
        package: the package's ``__name__``; it must already be in ``sys.modules`` (call from its ``__init__``).
        exports: submodule name (relative, e.g. ``"loss"``) -> the public names it defines.

    Returns:
        ``__getattr__(name)`` importing the submodule that defines ``name`` (or the submodule ``name``
        itself), ``__dir__()`` and ``__all__`` (the public names, in the order given).

    Raises:
        ValueError: a public name listed under two submodules.
    """
    module = sys.modules[package]
    origin: dict[str, str] = {}
    for sub, names in exports.items():
        for name in names:
            if name in origin:
                raise ValueError(f"exports: expected each name once, found {name!r} in {origin[name]!r} and {sub!r}")
            origin[name] = sub
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    shadowed = {name: sub for name, sub in origin.items() if name in submodules}
    if shadowed:
        module._lazy_shadowed = shadowed
        module.__class__ = _LazyPackage

    def __getattr__(name: str):
        if name in origin:
            value = getattr(importlib.import_module(f"{package}.{origin[name]}"), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(origin) | submodules)

    return __getattr__, __dir__, list(origin)
