"""CMU ASF/AMC parsing and forward kinematics; the built-in skeleton and its procedural motions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nrsfm_kit.data.mocap import load_amc, load_asf, load_cmu_mocap, mocap_to_nrsfm, write_amc, write_asf
from nrsfm_kit.data.skeleton import cmu_skeleton, euler_matrix, forward_kinematics, procedural_motion

# length unit 0.0254 makes the file lengths metres (metres = value / unit * 0.0254)
TINY_ASF = """# a 3-bone chain
:version 1.10
:units
  mass 1.0
  length 0.0254
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name a
     direction 1 0 0
     length 1.0
     axis 0 0 0 XYZ
    dof rx ry rz
  end
  begin
     id 2
     name b
     direction 1 0 0
     length 0.5
     axis 0 0 90 XYZ
    dof rx
  end
  begin
     id 3
     name c
     direction 0 2 0
     length 0.25
     axis 0 0 0 XYZ
  end
:hierarchy
  begin
    root a
    a b
    b c
  end
"""


def _amc(frames):
    out = [":FULLY-SPECIFIED", ":DEGREES"]
    for k, (root, a, b) in enumerate(frames, start=1):
        out += [str(k), "root " + " ".join(map(str, root)), "a " + " ".join(map(str, a)), f"b {b}"]
    return "\n".join(out) + "\n"


def test_forward_kinematics_by_hand(tmp_path):
    (tmp_path / "t.asf").write_text(TINY_ASF)
    frames = [
        ((0, 0, 0, 0, 0, 0), (0, 0, 0), 0),  # rest pose
        ((0, 0, 0, 0, 0, 0), (0, 0, 90), 0),  # a rotated 90 deg about z: points along +y
        ((0, 0, 0, 0, 0, 0), (0, 0, 0), 90),  # b: rx 90 in its axis frame (z 90) = 90 deg about global y
        ((1, 2, 3, 0, 90, 0), (0, 0, 0), 0),  # root translated and turned 90 deg about y
    ]
    (tmp_path / "t.amc").write_text(_amc(frames))
    m = load_cmu_mocap(tmp_path / "t.asf", tmp_path / "t.amc", dtype=torch.float64)
    assert m.joint_names == ["root", "a", "b", "c"] and m.bones == [(0, 1), (1, 2), (2, 3)]
    J = m.joints.numpy()
    expect = [
        [[0, 0, 0], [1, 0, 0], [1.5, 0, 0], [1.5, 0.25, 0]],
        [[0, 0, 0], [0, 1, 0], [0, 1.5, 0], [-0.25, 1.5, 0]],
        [[0, 0, 0], [1, 0, 0], [1, 0, -0.5], [1, 0.25, -0.5]],
        [[1, 2, 3], [1, 2, 2], [1, 2, 1.5], [1, 2.25, 1.5]],
    ]
    np.testing.assert_allclose(J, np.array(expect, dtype=float), atol=1e-12)


def test_euler_order():
    a = np.array([30.0, -20.0, 50.0])
    Rx, Ry, Rz = (euler_matrix(np.eye(3)[k] * a[k]) for k in range(3))
    np.testing.assert_allclose(euler_matrix(a, "XYZ"), Rz @ Ry @ Rx, atol=1e-12)
    np.testing.assert_allclose(euler_matrix(a, "ZYX"), Rx @ Ry @ Rz, atol=1e-12)
    with pytest.raises(ValueError, match="order"):
        euler_matrix(a, "XXY")


@pytest.mark.parametrize("motion", ["walking", "waving", "bending"])
def test_builtin_skeleton_round_trip_through_files(tmp_path, motion):
    sk = cmu_skeleton()
    assert len(sk.joint_names) == 31
    root, vals = procedural_motion(sk, motion, 12, np.random.default_rng(0))
    J = forward_kinematics(sk, root, vals)
    write_asf(tmp_path / "s.asf", sk)
    write_amc(tmp_path / "m.amc", sk, root, vals)
    m = load_cmu_mocap(tmp_path / "s.asf", tmp_path / "m.amc", dtype=torch.float64)
    assert m.joints.shape == (12, 31, 3)
    assert np.abs(m.joints.numpy() - J).max() < 1e-5  # 6-decimal text files
    i, j = np.array(m.bones).T
    L = np.linalg.norm(J[:, i] - J[:, j], axis=-1)
    np.testing.assert_allclose(L, np.broadcast_to([b.length for b in sk.bones], L.shape), rtol=1e-9)
    seq = mocap_to_nrsfm(m, camera="smooth", seed=1, dtype=torch.float64)
    assert seq.W.shape == (12, 31, 2) and torch.allclose(seq.W, seq.S[..., :2])
    assert torch.allclose(seq.W, seq.S_world @ seq.cameras.mT)


def test_asf_amc_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"x\.asf: ASF skeleton file not found"):
        load_asf(tmp_path / "x.asf")
    (tmp_path / "bad.asf").write_text(TINY_ASF.replace("length 0.5", "length half"))
    with pytest.raises(ValueError, match=r"bad\.asf:\d+: expected numbers, found 'half'"):
        load_asf(tmp_path / "bad.asf")
    (tmp_path / "orphan.asf").write_text(TINY_ASF.replace("    b c\n", ""))
    with pytest.raises(ValueError, match=r"orphan\.asf: bones without a parent in :hierarchy: \['c'\]"):
        load_asf(tmp_path / "orphan.asf")
    (tmp_path / "empty.asf").write_text(":units\n  length 1\n")
    with pytest.raises(ValueError, match=r"empty\.asf: expected a :bonedata section"):
        load_asf(tmp_path / "empty.asf")
    (tmp_path / "t.asf").write_text(TINY_ASF)
    sk = load_asf(tmp_path / "t.asf")
    (tmp_path / "a.amc").write_text(":DEGREES\n1\nroot 0 0 0 0 0 0\nzz 1 2 3\n")
    with pytest.raises(ValueError, match=r"a\.amc:4: bone 'zz' is not in the skeleton"):
        load_amc(tmp_path / "a.amc", sk)
    (tmp_path / "b.amc").write_text(":DEGREES\n1\nroot 0 0 0 0 0 0\na 1 2\n")
    with pytest.raises(ValueError, match=r"b\.amc:4: expected 3 numbers, found 2"):
        load_amc(tmp_path / "b.amc", sk)
    (tmp_path / "c.amc").write_text(":DEGREES\n1\nroot 0 0 0 nan 0 0\n")
    with pytest.raises(ValueError, match=r"c\.amc:3: expected finite numbers"):
        load_amc(tmp_path / "c.amc", sk)
    (tmp_path / "d.amc").write_text(":DEGREES\n")
    with pytest.raises(ValueError, match=r"d\.amc: expected at least one frame"):
        load_amc(tmp_path / "d.amc", sk)
    (tmp_path / "e.amc").write_text("root 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"e\.amc:1: expected a frame number"):
        load_amc(tmp_path / "e.amc", sk)
    with pytest.raises(FileNotFoundError, match=r"none\.amc"):
        load_amc(tmp_path / "none.amc", sk)


def test_asf_real_file_features(tmp_path):
    """CMU files carry :name/:documentation text, multi-line limits and e-notation; the parser skips/reads them."""
    text = TINY_ASF.replace(":units", ":name VICON\n:documentation\n   generated from VICON data\n   by a tool\n:units")
    text = text.replace("    dof rx ry rz\n", "    dof rx ry rz\n    limits (-160.0 20.0)\n           (-70.0 70.0)\n"
                                                "           (-60.0 70.0)\n")  # fmt: skip
    text = text.replace("direction 1 0 0\n     length 0.5", "direction 1 -4.48953e-011 1.43537e-026\n     length 0.5")
    (tmp_path / "real.asf").write_text(text)
    sk = load_asf(tmp_path / "real.asf")
    assert [b.name for b in sk.bones] == ["a", "b", "c"]
    assert sk.bone("a").dof == ("rx", "ry", "rz") and np.allclose(sk.bone("b").direction, [1, 0, 0])
    np.testing.assert_allclose(sk.bone("b").axis, [0, 0, 90])


def test_forward_kinematics_and_motion_bad_inputs():
    sk = cmu_skeleton()
    root, vals = procedural_motion(sk, "walking", 4, np.random.default_rng(0))
    bad_root = root.copy()
    bad_root[1, 3] = np.nan
    with pytest.raises(ValueError, match="root_values: expected finite values, found 1 non-finite"):
        forward_kinematics(sk, bad_root, vals)
    with pytest.raises(ValueError, match=r"root_values: expected shape \(F, 6\)"):
        forward_kinematics(sk, root[:, :5], vals)
    with pytest.raises(ValueError, match="bone_values: bone 'tail' is not in the skeleton"):
        forward_kinematics(sk, root, {**vals, "tail": np.zeros((4, 1))})
    with pytest.raises(ValueError, match=r"bone_values\['lfemur'\]: expected shape \(4, 3\)"):
        forward_kinematics(sk, root, {**vals, "lfemur": np.zeros((4, 2))})
    inf = {**vals, "ltibia": np.full((4, 1), np.inf)}
    with pytest.raises(ValueError, match=r"bone_values\['ltibia'\]: expected finite angles"):
        forward_kinematics(sk, root, inf)
    with pytest.raises(ValueError, match="num_frames: expected an integer >= 1, found 0"):
        procedural_motion(sk, "walking", 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fps: expected a finite value > 0"):
        procedural_motion(sk, "waving", 5, np.random.default_rng(0), fps=0.0)
    with pytest.raises(ValueError, match="motion: expected one of"):
        procedural_motion(sk, "jumping", 5, np.random.default_rng(0))
