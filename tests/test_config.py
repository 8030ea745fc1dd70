import pytest

from nrsfm_kit import config


def test_smoke_flag(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)]:
        monkeypatch.setenv("NRSFM_KIT_SMOKE", value)
        assert config.smoke() is expected
    monkeypatch.setenv("NRSFM_KIT_SMOKE", "1")
    assert config.pick(100, 3) == 3
    monkeypatch.setenv("NRSFM_KIT_SMOKE", "0")
    assert config.pick(100, 3) == 100


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("NRSFM_KIT_DATA", raising=False)
    assert config.data_root() is None
    assert config.data_file("nrsfm", "pickup.mat") is None
    with pytest.raises(FileNotFoundError, match="NRSFM_KIT_DATA is not set"):
        config.data_root(required=True)
    monkeypatch.setenv("NRSFM_KIT_DATA", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="nope"):
        config.data_root()
    monkeypatch.setenv("NRSFM_KIT_DATA", str(tmp_path))
    assert config.data_root() == tmp_path
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        config.data_file("missing.mat")


def test_real_data_samples_present(real_data):
    # CI sets NRSFM_KIT_DATA: every documented sample must be there
    for name in ["pickup", "yoga", "stretch", "face", "walking"]:
        assert real_data("nrsfm", f"{name}.mat").stat().st_size > 0
    seq = real_data("deepdeform", "train", "seq258")
    for rel in ["color/000000.jpg", "depth/000000.png", "mask/000000_shirt.png", "intrinsics.txt"]:
        assert (seq / rel).exists(), rel
