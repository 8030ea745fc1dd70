"""Corpus pre-training of the depth net (nrsfm_kit/edm/pretrain.py) and ``nrsfm-kit depth pretrain``."""

from __future__ import annotations

import json

import pytest
import torch

from nrsfm_kit.cli import main
from nrsfm_kit.edm.loss import EDMLossConfig
from nrsfm_kit.edm.pretrain import (
    CORPUS_SPLITS,
    MAX_VIDEOS,
    PretrainConfig,
    corpus_specs,
    evaluate_corpus,
    load_pretrained,
    make_corpus,
    pretrain_corpus,
    untrained_depth_net,
)
from nrsfm_kit.edm.training import TwoStageConfig, fit_sequence, synthetic_video
from nrsfm_kit.models import DepthNetConfig
from nrsfm_kit.utils.faults import InjectedFault, inject


def _cfg(**kw) -> PretrainConfig:
    base = dict(frames=4, height=32, width=48, steps=4, net_width=8, log_every=1, progress=False, backend="torch",
                loss=EDMLossConfig(num_pairs=2000, beta=0.3, beta_scale="residual", lookup="edge"))
    return PretrainConfig(**{**base, **kw})


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corpus_videos_differ_and_splits_are_disjoint():
    corpus = make_corpus(2, 4, 32, 48)
    (s0, v0), (s1, v1) = corpus
    assert s0["seed"] != s1["seed"]
    assert not torch.equal(v0.frames, v1.frames)
    assert not torch.equal(v0.depth, v1.depth)
    pre = {s["seed"] for s in corpus_specs(50, "pretrain")}
    held = {s["seed"] for s in corpus_specs(50, "heldout")}
    assert not pre & held
    bases = sorted(CORPUS_SPLITS.values())  # every pair of splits disjoint at any allowed size
    assert all(b - a >= MAX_VIDEOS for a, b in zip(bases, bases[1:]))
    assert len({s["scene"] for s in corpus_specs(20)}) > 1  # the generator's knobs vary across the corpus
    assert len({s["camera_motion"] for s in corpus_specs(20)}) == 20
    assert corpus_specs(3) == corpus_specs(3)  # deterministic


def test_pretraining_lowers_its_loss():
    res = pretrain_corpus(2, _cfg(steps=30), seed=0)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 30
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, (first, last)


def test_checkpoint_round_trip_and_init(tmp_path):
    res = pretrain_corpus(2, _cfg(steps=2), out_dir=tmp_path / "pre")
    path = tmp_path / "pre" / "pretrained_depth.pt"
    assert res.checkpoint == path and path.is_file()
    ck = load_pretrained(path)
    assert _same_weights(ck["depth"], res.model["depth"].state_dict())
    assert ck["depth_config"]["width"] == 8 and ck["motion"] is None
    assert [c["seed"] for c in ck["corpus"]] == [CORPUS_SPLITS["pretrain"], CORPUS_SPLITS["pretrain"] + 1]
    # fit_sequence with init_from: the depth net starts from the checkpoint (0 steps: nothing changes it)
    video = synthetic_video(3, 32, 48)
    cfg = TwoStageConfig(steps_stage1=0, steps_stage2=0, width=8, init_from=str(path), progress=False,
                         depth=DepthNetConfig(min_depth=0.5, max_depth=10.0),
                         loss=EDMLossConfig(num_pairs=500))
    fitted = fit_sequence(video, "rigid", cfg, backend="torch")
    assert _same_weights(fitted.model["depth"].state_dict(), ck["depth"])
    # the held-out evaluation: per-video AbsRel, mean, timing
    ev = evaluate_corpus(path, 1)
    assert len(ev["videos"]) == 1 and ev["videos"][0]["seed"] == CORPUS_SPLITS["heldout"]
    assert ev["mean_abs_rel"] > 0 and ev["seconds_per_frame"] > 0 and ev["size"] == [4, 32, 48]
    base = evaluate_corpus(untrained_depth_net(ck), 1, frames=4, height=32, width=48)
    assert base["mean_abs_rel"] != ev["mean_abs_rel"]
    # wrong width: refused, naming the file
    with pytest.raises(ValueError, match="pretrained_depth.pt.*width 16.*width 8"):
        fit_sequence(video, "rigid", TwoStageConfig(steps_stage1=0, steps_stage2=0, width=16, init_from=str(path)))


def test_resume_after_interruption_is_exact(tmp_path):
    cfg = _cfg(steps=4, checkpoint_every=2)
    full = pretrain_corpus(2, cfg, out_dir=tmp_path / "full")
    with inject("step@3"), pytest.raises(InjectedFault):  # dies in step 3, after the checkpoint at step 2
        pretrain_corpus(2, cfg, out_dir=tmp_path / "cut")
    assert not (tmp_path / "cut" / "pretrained_depth.pt").exists()
    again = pretrain_corpus(2, cfg, out_dir=tmp_path / "cut")
    assert again.resumed_from == 2
    assert _same_weights(again.model.state_dict(), full.model.state_dict())
    assert again.history == full.history


def test_cli_end_to_end(tmp_path, capsys):
    out, js = tmp_path / "run", tmp_path / "report.json"
    rc = main(["depth", "pretrain", "--corpus", "synthetic", "--videos", "2", "--out", str(out), "--steps", "2",
               "--smoke", "--quiet", "--eval-videos", "1", "--json", str(js)])
    assert rc == 0
    assert (out / "pretrained_depth.pt").is_file() and (out / "pretrain.json").is_file()
    report = json.loads(js.read_text())
    assert report["videos"] == 2 and len(report["corpus_seeds"]) == 2
    for which in ("pretrained", "untrained"):
        assert report["heldout"][which]["mean_abs_rel"] > 0
        assert len(report["heldout"][which]["videos"]) == 1
    capsys.readouterr()
    # depth fit --init starts from it
    rc = main(["depth", "fit", "--sequence", "synthetic", "--smoke", "--quiet", "--steps", "0", "--variant", "rigid",
               "--height", "32", "--width", "48", "--init", str(out / "pretrained_depth.pt")])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["init"] == str(out / "pretrained_depth.pt")


@pytest.mark.parametrize("n", ["0", "-3"])
def test_bad_videos(tmp_path, capsys, n):
    rc = main(["depth", "pretrain", "--corpus", "synthetic", "--videos", n, "--out", str(tmp_path / "o")])
    assert rc == 2
    assert f"--videos: expected an integer >= 1, found {n}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="num_videos: expected an integer >= 1"):
        pretrain_corpus(int(n), _cfg())


def test_bad_init_file(tmp_path, capsys):
    bad = tmp_path / "not_a_checkpoint.pt"
    torch.save({"state_dict": {}}, bad)
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    for path in (bad, junk, tmp_path / "missing.pt"):
        rc = main(["depth", "fit", "--sequence", "synthetic", "--smoke", "--quiet", "--init", str(path)])
        assert rc == 2
        err = capsys.readouterr().err
        assert str(path) in err and "pretrained depth checkpoint" in err
    with pytest.raises(ValueError, match="not_a_checkpoint.pt: expected a pretrained depth checkpoint"):
        fit_sequence(synthetic_video(3, 32, 48), "rigid", TwoStageConfig(init_from=str(bad)))


def test_joint_and_refused_folder(tmp_path):
    res = pretrain_corpus(1, _cfg(steps=1, joint=True), out_dir=tmp_path)
    ck = load_pretrained(res.checkpoint)
    assert ck["motion"] is not None and ck["motion_config"]["width"] == 8
    with pytest.raises(ValueError, match="out_dir: expected a new folder or one written with the same settings"):
        pretrain_corpus(2, _cfg(steps=1, joint=True), out_dir=tmp_path)
