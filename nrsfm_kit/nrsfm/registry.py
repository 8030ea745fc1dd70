"""The NRSfM methods by name: one :class:`NRSfMMethod` interface and a ``name -> method`` registry.

:func:`nrsfm_kit.nrsfm.fit.fit_nrsfm` and ``nrsfm-kit nrsfm fit --method`` find methods here. A method is
one class beside its implementation (an :class:`NRSfMMethod`; the learned ones subclass
:class:`nrsfm_kit.nrsfm.learned.LearnedMethod`, which trains through :func:`nrsfm_kit.train.fit`) plus one
registration::

    class MyMethod(NRSfMMethod):
        name = "mine"
        def fit(self, seq, **options): ...

    register("mine", MyMethod())                                  # an object, or lazily:
    register("mine", "my_package.my_module:MyMethod")             # imported on first use

The built-in methods are registered lazily (by ``"module:attribute"``), so their names are known without
importing torch: this module imports nothing heavy, and the CLI builds its ``--method`` choices from it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from nrsfm_kit.data.types import NRSfMSequence
    from nrsfm_kit.nrsfm.common import NRSfMResult


class NRSfMMethod:
    """One NRSfM method: ``fit(seq, ...) -> NRSfMResult`` (shapes in each camera frame, units of W).

    Attributes:
        name: the registered name (``NRSfMResult.method``, ``--method``).
    """

    name: str = ""

    def fit(
        self,
        seq: NRSfMSequence,
        *,
        epochs: int | None = None,
        model_config=None,
        config=None,
        out_dir: str | Path | None = None,
        resume: bool = True,
    ) -> NRSfMResult:
        """Reconstruct ``seq`` (validated by the caller: ``seq.W`` (F, P, 2), ``seq.visibility`` (F, P)).

        Args:
            epochs: training epochs of the learned methods, iterations of an iterative classical one (or None).
            model_config: the method's own config dataclass (None: the paper's defaults).
            config: the training schedule of the learned methods (:class:`~nrsfm_kit.nrsfm.learned.LearnedFitConfig`).
            out_dir, resume: checkpoint folder of the learned methods and whether to resume from it.
        """
        raise NotImplementedError(f"{type(self).__name__}.fit")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_REGISTRY: dict[str, NRSfMMethod | str] = {}  # name -> method object, or "module:attribute" not imported yet


def register(name: str, method: NRSfMMethod | str, *, replace: bool = False) -> None:
    """Register ``method`` under ``name``.

    Args:
        name: the method's name; must equal ``method.name`` (checked when the method is first looked up).
        method: an :class:`NRSfMMethod` object, or ``"package.module:attribute"`` (an :class:`NRSfMMethod`
            subclass, instantiated without arguments, or an object), imported on first lookup.
        replace: allow replacing a registered method of the same name.

    Raises:
        ValueError: ``name`` not a non-empty string, ``method`` of another type, or ``name`` taken.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty str, found {name!r}")
    if isinstance(method, str):
        if method.count(":") != 1 or not all(method.split(":")):
            raise ValueError(f"method: expected 'package.module:attribute', found {method!r}")
    elif not isinstance(method, NRSfMMethod):
        raise ValueError(f"method: expected an NRSfMMethod or 'module:attribute', found {type(method).__name__}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"name: expected a name not registered yet (or replace=True), found {name!r}")
    _REGISTRY[name] = method


def unregister(name: str) -> None:
    """Remove the method registered under ``name`` (ValueError when there is none)."""
    if name not in _REGISTRY:
        raise ValueError(f"name: expected one of {method_names()}, found {name!r}")
    del _REGISTRY[name]


def method_names() -> tuple[str, ...]:
    """Names of the registered methods, in registration order (imports no method)."""
    return tuple(_REGISTRY)


def get_method(name: str) -> NRSfMMethod:
    """The method registered under ``name`` (importing its module on first use).

    Raises:
        ValueError: ``method: expected one of (...), found 'name'`` for an unknown name; a lazy entry
            that does not resolve to an :class:`NRSfMMethod` named ``name``.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"method: expected one of {method_names()}, found {name!r}")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        obj = getattr(importlib.import_module(module), attr)
        method = obj() if isinstance(obj, type) and issubclass(obj, NRSfMMethod) else obj
        if not isinstance(method, NRSfMMethod):
            raise ValueError(f"method: expected {entry} to be an NRSfMMethod, found {type(method).__name__}")
        _REGISTRY[name] = entry = method
    if entry.name != name:
        raise ValueError(f"method: expected {type(entry).__name__}.name == {name!r} (its registered name), "
                         f"found {entry.name!r}")
    return entry


register("tk", "nrsfm_kit.nrsfm.classical:TomasiKanadeMethod")
register("em-ppca", "nrsfm_kit.nrsfm.classical:EMPPCAMethod")
register("dnrsfm", "nrsfm_kit.nrsfm.deep_nrsfm:DeepNRSfMMethod")
register("prrrn", "nrsfm_kit.nrsfm.prrrn:PRRRNMethod")

METHODS = method_names()  # the built-in methods; method_names() also lists those registered later
