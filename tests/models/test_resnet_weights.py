"""Loading torchvision's ImageNet ResNet-18 weights into our encoder, and its ImageNet input standardisation."""

from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.nn.functional as F

from nrsfm_kit.data.types import MonocularVideo
from nrsfm_kit.edm.training import TwoStageConfig, fit_sequence
from nrsfm_kit.models import (
    DepthNet,
    DepthNetConfig,
    MotionNet,
    ResNet18Encoder,
    check_resnet18_weights,
    load_resnet18_weights,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18().state_dict(): names and shapes in its order (written out, not derived
    from our encoder): stem, 4 stages of 2 BasicBlocks (a 1x1 conv + BN ``downsample`` on the first block of
    stages 2-4), the 1000-way classifier."""

    def bn(prefix: str, c: int) -> dict:
        return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}

    out = {"conv1.weight": (64, 3, 7, 7), **bn("bn1", 64)}
    for stage, (cin, cout) in enumerate(((64, 64), (64, 128), (128, 256), (256, 512)), start=1):
        for block in (0, 1):
            p = f"layer{stage}.{block}"
            c_in = cin if block == 0 else cout
            out[f"{p}.conv1.weight"] = (cout, c_in, 3, 3)
            out.update(bn(f"{p}.bn1", cout))
            out[f"{p}.conv2.weight"] = (cout, cout, 3, 3)
            out.update(bn(f"{p}.bn2", cout))
            if block == 0 and stage > 1:
                out[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                out.update(bn(f"{p}.downsample.1", cout))
    out["fc.weight"], out["fc.bias"] = (1000, 512), (1000,)
    return out


def random_torchvision_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of sensible size (He-scaled convs, BN near identity) in torchvision's layout (a new dict
    of shared tensors: replace entries, do not modify them in place)."""
    return dict(_random_state_dict(seed))


@functools.cache
def _random_state_dict(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in torchvision_resnet18_shapes().items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.randint(0, 10_000, (), generator=g)
        elif name.endswith("running_var"):
            sd[name] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 4:
            sd[name] = torch.randn(shape, generator=g) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        elif name.endswith("bn1.weight") or name.endswith("bn2.weight") or name.endswith("downsample.1.weight"):
            sd[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        else:
            sd[name] = 0.1 * torch.randn(shape, generator=g)
    return sd


def ours(name: str) -> str:
    return name.replace(".downsample.", ".down.")


def tiny_video() -> MonocularVideo:
    """Two random 32x32 frames with a one-pixel shift (no rendering: the wiring tests train 0 steps)."""
    g = torch.Generator().manual_seed(0)
    flow = torch.zeros(1, 32, 32, 2)
    flow[..., 0] = 1.0
    return MonocularVideo(frames=torch.rand(2, 3, 32, 32, generator=g), intrinsics=torch.tensor([30.0, 30.0, 15.5, 15.5]),
                          flow=flow)


def snapshot(enc: ResNet18Encoder) -> tuple[dict, str]:
    return {k: v.clone() for k, v in enc.state_dict(keep_vars=False).items()}, enc.normalisation


def assert_unchanged(enc: ResNet18Encoder, before: tuple[dict, str]) -> None:
    sd, mode = before
    now = enc.state_dict()
    assert enc.normalisation == mode and now.keys() == sd.keys()
    assert all(torch.equal(now[k], sd[k]) for k in sd)


def test_key_table_is_torchvisions_resnet18():
    shapes = torchvision_resnet18_shapes()
    assert len(shapes) == 122  # incl. 20 num_batches_tracked and fc
    params = [s for k, s in shapes.items() if not k.split(".")[-1].startswith(("running", "num_batches"))]
    assert sum(torch.Size(s).numel() for s in params) == 11_689_512  # torchvision's published count


def test_torchvision_weights_load_exactly(tmp_path):
    sd = random_torchvision_state_dict()
    enc = ResNet18Encoder(3)
    assert enc.normalisation == "monodepth"
    report = load_resnet18_weights(enc, sd)
    assert report["loaded"] == 120 and report["ignored"] == ["fc.bias", "fc.weight"]
    assert report["first_conv"] == "copied" and report["defaulted"] == [] and report["normalisation"] == "imagenet"
    mine = enc.state_dict()
    for name, value in sd.items():
        if not name.startswith("fc."):
            assert torch.equal(mine[ours(name)], value), name
    assert enc.normalisation == "imagenet"
    assert torch.equal(enc.input_mean, torch.tensor(IMAGENET_MEAN)) and torch.equal(enc.input_std, torch.tensor(IMAGENET_STD))

    # a file: a checkpoint wrapping it (Lightning's "state_dict", or "model"), with DataParallel's prefix
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    for source in (path, {"model": sd}, {"state_dict": {"model": sd}}):
        enc2 = ResNet18Encoder(3)
        assert load_resnet18_weights(enc2, source)["loaded"] == 120
        assert all(torch.equal(enc2.state_dict()[k], v) for k, v in mine.items())

    # an old file without num_batches_tracked (102 tensors): those are set to 0
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    enc3 = ResNet18Encoder(3)
    rep = load_resnet18_weights(enc3, old)
    assert len(old) == 102 and len(rep["defaulted"]) == 20 and rep["loaded"] == 100
    assert int(enc3.bn1.num_batches_tracked) == 0 and torch.equal(enc3.layer4[1].bn2.running_var, sd["layer4.1.bn2.running_var"])


def test_six_channel_first_conv_and_identical_frames():
    sd = random_torchvision_state_dict(1)
    enc3, enc6 = ResNet18Encoder(3), ResNet18Encoder(6)
    load_resnet18_weights(enc3, sd)
    rep = load_resnet18_weights(enc6, sd)
    w = sd["conv1.weight"]
    assert rep["first_conv"] == "repeated" and rep["first_conv_repeats"] == 2
    assert torch.equal(enc6.conv1.weight, torch.cat([w, w], 1) / 2)
    assert torch.equal(enc6.input_mean, torch.tensor(IMAGENET_MEAN * 2))
    assert torch.equal(enc6.input_std, torch.tensor(IMAGENET_STD * 2))
    assert torch.equal(enc6.layer3[0].down[0].weight, sd["layer3.0.downsample.0.weight"])
    enc3, enc6 = enc3.double().eval(), enc6.double().eval()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f3, f6 = enc3(x), enc6(torch.cat([x, x], 1))
        # the ImageNet standardisation is the one applied (not (x - 0.45) / 0.225)
        m = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        s = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
        f0 = enc3.relu(enc3.bn1(F.conv2d((x - m) / s, enc3.conv1.weight, stride=2, padding=3)))
    assert torch.allclose(f3[0], f0, rtol=1e-6, atol=1e-6)  # the buffers hold the statistics in float32
    with torch.no_grad():
        f0_monodepth = enc3.relu(enc3.bn1(F.conv2d((x - 0.45) / 0.225, enc3.conv1.weight, stride=2, padding=3)))
    assert not torch.allclose(f3[0], f0_monodepth, rtol=1e-3, atol=1e-3)
    for a, b in zip(f3, f6):
        assert float(a.abs().max()) > 0.1  # the features are not degenerate
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)  # two identical frames = one frame


def test_default_standardisation_unchanged_and_switchable():
    torch.manual_seed(0)
    enc = ResNet18Encoder(3, 8).double().eval()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        f0 = enc.relu(enc.bn1(enc.conv1((x - 0.45) / 0.225)))
        assert torch.equal(enc(x)[0], f0)  # Monodepth2's scalars, bit for bit
        enc.set_normalisation("imagenet")
        m = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        s = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
        assert torch.allclose(enc(x)[0], enc.relu(enc.bn1(enc.conv1((x - m) / s))), rtol=0, atol=1e-12)
    assert "input_mean" not in ResNet18Encoder(3, 8).state_dict()  # default state dicts keep their old keys
    assert "normalisation='imagenet'" in repr(enc)
    with pytest.raises(ValueError, match=r"normalisation: expected one of \('monodepth', 'imagenet'\), found 'coco'"):
        ResNet18Encoder(3, 8, normalisation="coco")
    with pytest.raises(ValueError, match="in_channels: expected a multiple of 3"):
        ResNet18Encoder(4, 8).set_normalisation("imagenet")


def test_imagenet_standardisation_gradcheck():
    torch.manual_seed(0)
    enc = ResNet18Encoder(3, 2, normalisation="imagenet").double().eval()
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: enc(t)[0], (x,))


def test_standardisation_travels_with_the_state_dict(tmp_path):
    sd = random_torchvision_state_dict(2)
    net = MotionNet(64, encoder_weights=sd)
    assert net.encoder_report["first_conv"] == "repeated" and net.encoder.normalisation == "imagenet"
    path = tmp_path / "motion.pt"
    torch.save(net.state_dict(), path)
    fresh = MotionNet(64)
    assert fresh.encoder.normalisation == "monodepth"
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert fresh.encoder.normalisation == "imagenet"
    assert torch.equal(fresh.encoder.input_std, torch.tensor(IMAGENET_STD * 2))
    a = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(a, a), net.eval()(a, a))
    # a default state dict read into an ImageNet encoder: the absent keys mean the default standardisation
    enc = ResNet18Encoder(3)
    load_resnet18_weights(enc, sd)
    enc.load_state_dict(ResNet18Encoder(3).state_dict())
    assert enc.normalisation == "monodepth" and torch.equal(enc.input_mean, torch.full((3,), 0.45))


def test_other_statistics_in_a_state_dict():
    enc = ResNet18Encoder(3, 8)
    sd = {**enc.state_dict(), "input_mean": torch.tensor([0.5, 0.5, 0.5]), "input_std": torch.tensor([0.5, 0.25, 1.0])}
    enc.load_state_dict(sd)
    assert enc.normalisation == "custom" and "input_std" in enc.state_dict()
    x = torch.rand(1, 3, 16, 16)
    enc.eval()
    with torch.no_grad():
        want = enc.relu(enc.bn1(enc.conv1((x - 0.5) / torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1))))
        assert torch.allclose(enc(x)[0], want)
    fresh = ResNet18Encoder(3, 8)
    with pytest.raises(RuntimeError, match=r"input_std: expected finite standard deviations > 0, found \[0.5, 0.0, 1.0\]"):
        fresh.load_state_dict({**sd, "input_std": torch.tensor([0.5, 0.0, 1.0])})
    assert fresh.normalisation == "monodepth"


def test_old_checkpoint_without_the_new_keys_loads(tmp_path):
    """A state dict as the encoder wrote it before the standardisation buffers: torchvision's keys with
    ``down``, no ``fc``, nothing else (also the key set the training loop's resume check compares)."""
    from nrsfm_kit.train.state import check_model_state

    old = {ours(k): v for k, v in random_torchvision_state_dict(3).items() if not k.startswith("fc.")}
    assert len(old) == 120
    path = tmp_path / "old_encoder.pt"
    torch.save(old, path)
    for mode in ("monodepth", "imagenet"):
        enc = ResNet18Encoder(3, normalisation=mode)
        check_model_state(enc, old, "old") if mode == "monodepth" else None  # resumable by nrsfm_kit.train.fit
        enc.load_state_dict(torch.load(path, weights_only=True), strict=True)
        assert enc.normalisation == "monodepth"  # what the old encoder always used
        assert all(torch.equal(enc.state_dict()[k], v) for k, v in old.items())
    depth_old = {f"encoder.{k}": v for k, v in old.items()}
    net = DepthNet()
    depth_old.update({k: v for k, v in net.state_dict().items() if k.startswith("decoder.")})
    net.load_state_dict(depth_old, strict=True)
    assert net.encoder.normalisation == "monodepth"


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(random_torchvision_state_dict(4), path)
    return path


def _bad_file(tmp_path, case: str):
    sd = random_torchvision_state_dict(4)
    path = tmp_path / f"{case}.pth"
    if case == "missing_key":
        del sd["layer3.1.bn2.weight"]
    elif case == "misshaped_key":
        sd["layer3.1.bn2.weight"] = torch.ones(128)
    elif case == "nonfinite":
        sd["layer2.0.downsample.0.weight"] = sd["layer2.0.downsample.0.weight"].clone()
        sd["layer2.0.downsample.0.weight"][0, 0, 0, 0] = float("nan")
    elif case == "resnet34_extra":
        sd["layer1.2.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    elif case == "not_a_tensor":
        sd["bn1.weight"] = [1.0] * 64
    if case == "unreadable":
        path.write_bytes(b"\x00garbage, not a torch file")
    elif case == "tensor":
        torch.save(torch.zeros(3), path)
    elif case == "list":
        torch.save([sd["conv1.weight"]], path)
    elif case != "no_file":
        torch.save(sd, path)
    return path


BAD_FILES = {
    "missing_key": "encoder weights {p}: expected key 'layer3.1.bn2.weight' of shape (256,), found it missing",
    "misshaped_key": "encoder weights {p}: expected key 'layer3.1.bn2.weight' of shape (256,), found (128,)",
    "nonfinite": "encoder weights {p}: expected finite values in key 'layer2.0.downsample.0.weight', found 1",
    "resnet34_extra": "encoder weights {p}: expected only torchvision ResNet-18 keys, found 1 others, e.g. "
                      "'layer1.2.conv1.weight'",
    "not_a_tensor": "encoder weights {p}: expected key 'bn1.weight' to be a tensor of shape (64,), found list",
    "unreadable": "encoder weights {p}: expected a torch file with a state dict (torch.save(model.state_dict())), "
                  "found an unreadable file",
    "tensor": "encoder weights {p}: expected a state dict (a dict of tensors, or a checkpoint with one under "
              "'state_dict' or 'model'), found Tensor",
    "list": "encoder weights {p}: expected a state dict",
    "no_file": "encoder weights {p}: expected a torch file with torchvision ResNet-18 weights, found no such file",
}


@pytest.fixture(scope="module")
def encoder6():
    return ResNet18Encoder(6)  # shared by the failed loads: each checks that it is unchanged


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_weight_files_leave_the_encoder_unchanged(case, tmp_path, encoder6):
    path = _bad_file(tmp_path, case)
    enc = encoder6
    before = snapshot(enc)
    err = FileNotFoundError if case == "no_file" else ValueError
    with pytest.raises(err) as exc:
        load_resnet18_weights(enc, path)
    assert BAD_FILES[case].format(p=path) in str(exc.value)
    assert_unchanged(enc, before)
    if case in ("misshaped_key", "unreadable"):  # the check without an encoder raises the same
        with pytest.raises(err, match="encoder weights"):
            check_resnet18_weights(path, in_channels=6)


def test_bad_encoders_and_sources(tmp_path, weights_file):
    for enc, match in ((ResNet18Encoder(3, 32), "width: expected 64 (the real ResNet-18) to load ImageNet ResNet-18 "
                        "weights, found an encoder of width 32"),
                       (ResNet18Encoder(4), "in_channels: expected 3 or a multiple of 3 (stacked RGB frames) to "
                        "load RGB weights, found 4")):
        before = snapshot(enc)
        with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
            load_resnet18_weights(enc, weights_file)
        assert_unchanged(enc, before)
    with pytest.raises(ValueError, match="source: expected a path to a torch file or a state dict, found list"):
        load_resnet18_weights(ResNet18Encoder(3), [1, 2])
    with pytest.raises(ValueError, match=r"encoder weights .*: expected a torch file .* found a directory"):
        load_resnet18_weights(ResNet18Encoder(3), tmp_path)
    with pytest.raises(ValueError, match=r"conv1.weight' of shape \(64, 6, 7, 7\) \(or \(64, 3, 7, 7\)"):
        load_resnet18_weights(ResNet18Encoder(6), {**random_torchvision_state_dict(), "conv1.weight": torch.zeros(64, 4, 7, 7)})
    with pytest.raises(ValueError, match="encoder: expected a ResNet18Encoder, found Linear"):
        load_resnet18_weights(torch.nn.Linear(2, 2), weights_file)
    # strict_shapes=False: the mis-shaped tensor keeps its value, the rest loads
    sd = random_torchvision_state_dict(5)
    sd["layer3.1.bn2.weight"] = torch.ones(128)
    enc = ResNet18Encoder(3)
    keep = enc.layer3[1].bn2.weight.detach().clone()
    rep = load_resnet18_weights(enc, sd, strict_shapes=False)
    assert rep["skipped"] == ["layer3.1.bn2.weight: expected (256,), found (128,)"] and rep["loaded"] == 119
    assert torch.equal(enc.layer3[1].bn2.weight, keep) and torch.equal(enc.conv1.weight, sd["conv1.weight"])


def test_depth_net_config_and_training_wiring(tmp_path, weights_file):
    src = torch.load(weights_file, weights_only=True)
    net = DepthNet(DepthNetConfig(encoder_weights=weights_file))
    assert net.config.encoder_weights == str(weights_file) and net.encoder.normalisation == "imagenet"
    assert torch.equal(net.encoder.conv1.weight, src["conv1.weight"])
    with pytest.raises(ValueError, match="encoder_weights: expected a path or None, found int"):
        DepthNetConfig(encoder_weights=3)
    with pytest.raises(ValueError, match=r"depth.encoder_weights: expected None \(set TwoStageConfig.encoder_weights"):
        TwoStageConfig(depth=DepthNetConfig(encoder_weights=weights_file))
    video = tiny_video()
    with pytest.raises(ValueError, match="width: expected 64 .* with encoder_weights, found 8"):
        fit_sequence(video, "rigid", TwoStageConfig(width=8, encoder_weights=weights_file), out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()  # refused before the folder is made
    cfg = TwoStageConfig(steps_stage1=0, steps_stage2=0, encoder_weights=weights_file, progress=False)
    res = fit_sequence(video, "embeddings", cfg, backend="torch")
    w = src["conv1.weight"]
    for key, conv in (("depth", w), ("motion", torch.cat([w, w], 1) / 2)):  # no step taken: the loaded weights
        assert res.model[key].encoder.normalisation == "imagenet"
        assert torch.equal(res.model[key].encoder.conv1.weight, conv)


def test_settings_json_records_the_weights_and_old_folders_still_match(tmp_path):
    from nrsfm_kit.edm.training import _check_run_settings

    cfg = TwoStageConfig(steps_stage1=0, steps_stage2=0, width=4, progress=False)
    fit_sequence(tiny_video(), "rigid", cfg, out_dir=tmp_path / "run", backend="torch")
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    # unset, the new fields are absent: settings.json as before them, so folders written earlier still resume
    assert "encoder_weights" not in settings and "encoder_weights" not in settings["depth"]
    (tmp_path / "w").mkdir()
    _check_run_settings(tmp_path / "w", TwoStageConfig(encoder_weights="x.pth"), "rigid", "torch", False, False)
    assert json.loads((tmp_path / "w" / "settings.json").read_text())["encoder_weights"] == "x.pth"
    with pytest.raises(ValueError, match="with different encoder_weights"):
        _check_run_settings(tmp_path / "w", TwoStageConfig(), "rigid", "torch", False, False)


def _no_fit(monkeypatch):
    import nrsfm_kit.edm.training as training

    def boom(*a, **k):
        raise AssertionError("fit_sequence ran although the arguments were bad")

    monkeypatch.setattr(training, "fit_sequence", boom)


def test_cli_encoder_weights_flag(tmp_path, monkeypatch, capsys, weights_file):
    import cv2
    import numpy as np

    from nrsfm_kit.cli import main

    seq = tmp_path / "seq"
    seq.mkdir()
    img = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    for k in range(2):
        cv2.imwrite(str(seq / f"{k:04d}.png"), img[:32, k:k + 32])
    base = ["depth", "fit", "--sequence", str(seq), "--smoke", "--quiet", "--variant", "rigid"]
    with monkeypatch.context() as mp:
        _no_fit(mp)
        out = tmp_path / "out"
        missing = tmp_path / "nope.pth"
        assert main([*base, "--out", str(out), "--encoder-weights", str(missing)]) == 2
        assert f"--encoder-weights: {missing} does not exist (expected a torch file" in capsys.readouterr().err
        assert not out.exists()  # before any work, the output folder included
        assert main([*base, "--encoder-weights", str(weights_file), "--net-width", "16"]) == 2
        assert "--net-width: expected 64 (the ResNet-18 of --encoder-weights) or unset, found 16" in capsys.readouterr().err
        bad = _bad_file(tmp_path, "misshaped_key")
        assert main([*base, "--out", str(out), "--encoder-weights", str(bad)]) == 2
        assert BAD_FILES["misshaped_key"].format(p=bad) in capsys.readouterr().err
        assert not out.exists()
    # a valid file: the run uses it (no training step: the report only)
    js = tmp_path / "rep.json"
    assert main([*base, "--steps", "0", "--height", "32", "--width", "32",
                 "--encoder-weights", str(weights_file), "--json", str(js)]) == 0
    assert json.loads(js.read_text())["encoder_weights"] == str(weights_file)
