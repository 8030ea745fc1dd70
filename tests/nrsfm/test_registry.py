"""The NRSfM method registry: lookup, errors, and dispatch of a newly registered method by fit_nrsfm."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from nrsfm_kit.nrsfm import (
    METHODS,
    LearnedMethod,
    NRSfMMethod,
    NRSfMResult,
    fit_learned,
    fit_nrsfm,
    get_method,
    method_names,
    register,
    unregister,
)
from nrsfm_kit.nrsfm.classical import EMPPCAMethod, TomasiKanadeMethod
from nrsfm_kit.nrsfm.deep_nrsfm import DeepNRSfMMethod
from nrsfm_kit.nrsfm.prrrn import PRRRNMethod


class _Flat(NRSfMMethod):
    """A dummy method: every point at depth 0 in the camera frame, identity cameras; records its calls."""

    name = "dummy-flat"

    def __init__(self):
        self.calls = []

    def fit(self, seq, *, epochs=None, model_config=None, config=None, out_dir=None, resume=True):
        self.calls.append({"epochs": epochs, "model_config": model_config, "out_dir": out_dir})
        F, P, _ = seq.W.shape
        S = torch.cat([seq.W, torch.zeros(F, P, 1)], -1)
        cams = torch.eye(3)[:2].expand(F, 2, 3)
        return NRSfMResult(S=S, cameras=cams, shapes=S, method=self.name, extra={"coherence": 0.5})


@pytest.fixture
def dummy():
    method = _Flat()
    register(method.name, method)
    yield method
    unregister(method.name)


def test_builtin_methods_by_name():
    assert METHODS == ("tk", "em-ppca", "dnrsfm", "prrrn") == method_names()
    for name, cls in [("tk", TomasiKanadeMethod), ("em-ppca", EMPPCAMethod), ("dnrsfm", DeepNRSfMMethod),
                      ("prrrn", PRRRNMethod)]:
        m = get_method(name)
        assert type(m) is cls and m.name == name and get_method(name) is m  # resolved once, then cached
    assert isinstance(get_method("dnrsfm"), LearnedMethod) and not isinstance(get_method("tk"), LearnedMethod)


@pytest.mark.parametrize("name", ["svd", "", None, "TK"])
def test_unknown_name_is_a_value_error_naming_the_choices(name):
    with pytest.raises(ValueError, match=r"method: expected one of \('tk', 'em-ppca', 'dnrsfm', 'prrrn'\), found"):
        get_method(name)


def test_registered_method_is_dispatched_by_fit_nrsfm_then_unregistered(make_lowrank):
    seq = make_lowrank(F=6, P=5)
    method = _Flat()
    register(method.name, method)
    try:
        assert method_names()[-1] == "dummy-flat" and get_method("dummy-flat") is method
        res, met = fit_nrsfm(seq, "dummy-flat", epochs=3, model_config="cfg")
        assert method.calls == [{"epochs": 3, "model_config": "cfg", "out_dir": None}]
        assert res.method == "dummy-flat" and met["method"] == "dummy-flat" and met["frames"] == 6
        assert met["reproj"] < 1e-6 and met["coherence"] == 0.5 and "e3d" in met  # W is reproduced exactly
    finally:
        unregister(method.name)
    assert "dummy-flat" not in method_names()
    with pytest.raises(ValueError, match="method: expected one of"):
        fit_nrsfm(seq, "dummy-flat")


def test_register_errors(dummy):
    with pytest.raises(ValueError, match="name: expected a name not registered yet"):
        register("tk", dummy)
    with pytest.raises(ValueError, match="name: expected a non-empty str"):
        register("", dummy)
    with pytest.raises(ValueError, match="method: expected an NRSfMMethod or 'module:attribute', found int"):
        register("x", 3)
    with pytest.raises(ValueError, match="method: expected 'package.module:attribute'"):
        register("x", "no_colon")
    with pytest.raises(ValueError, match="name: expected one of"):
        unregister("never-registered")
    register(dummy.name, dummy, replace=True)  # replacing is allowed when asked


def test_lazy_registration_and_name_checks():
    register("lazy-tk", "nrsfm_kit.nrsfm.classical:TomasiKanadeMethod")
    try:
        with pytest.raises(ValueError, match=r"expected TomasiKanadeMethod.name == 'lazy-tk'.*found 'tk'"):
            get_method("lazy-tk")
    finally:
        unregister("lazy-tk")
    register("lazy-bad", "nrsfm_kit.nrsfm.classical:tomasi_kanade")
    try:
        with pytest.raises(ValueError, match="to be an NRSfMMethod, found function"):
            get_method("lazy-bad")
    finally:
        unregister("lazy-bad")


def test_fit_learned_refuses_a_classical_method(make_lowrank, dummy):
    with pytest.raises(ValueError, match=r"method: expected one of the learned methods \('dnrsfm', 'prrrn'\), found 'tk'"):
        fit_learned(make_lowrank(F=5, P=6), "tk")
    with pytest.raises(ValueError, match="model_config: expected DeepNRSfMConfig for dnrsfm, found EMPPCAConfig"):
        from nrsfm_kit.nrsfm import EMPPCAConfig

        fit_nrsfm(make_lowrank(F=5, P=6), "dnrsfm", epochs=1, model_config=EMPPCAConfig())


def test_registry_and_cli_import_no_torch():
    code = ("import sys; from nrsfm_kit.nrsfm.registry import method_names; import nrsfm_kit.nrsfm.cli; "
            "print(method_names(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "('tk', 'em-ppca', 'dnrsfm', 'prrrn') False", out
