"""CMU Motion Capture: Acclaim ``.asf`` skeletons and ``.amc`` motions -> 31 joint positions (metres).

ASF sections used: ``:units`` (``length`` multiplier, ``angle deg|rad``), ``:root`` (``order``, ``axis``,
``position``, ``orientation``), ``:bonedata`` (``begin id name direction length axis dof ... end``) and
``:hierarchy`` (``parent child child ...``). Lengths are converted to metres with the CMU convention
metres = value / length_unit * 0.0254 (``length 0.45``: the file stores inches * 1/0.45). AMC files hold,
after ``:FULLY-SPECIFIED``/``:DEGREES`` headers, frames introduced by their number and one line per bone
with its dof values. Forward kinematics: :func:`nrsfm_kit.data.skeleton.forward_kinematics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nrsfm_kit.data.imageio import require_file
from nrsfm_kit.data.skeleton import INCH, Bone, Skeleton, forward_kinematics
from nrsfm_kit.data.types import NRSfMSequence
from nrsfm_kit.utils.io import atomic_write_text


def _floats(path: Path, line_no: int, items: list[str], n: int | None = None) -> np.ndarray:
    try:
        v = np.array([float(x) for x in items], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}:{line_no}: expected numbers, found {' '.join(items)!r}") from None
    if n is not None and v.size != n:
        raise ValueError(f"{path}:{line_no}: expected {n} numbers, found {v.size}")
    if not np.isfinite(v).all():
        raise ValueError(f"{path}:{line_no}: expected finite numbers, found {' '.join(items)!r}")
    return v


def load_asf(path: str | Path) -> Skeleton:
    """Parse an Acclaim skeleton file into a :class:`Skeleton` (lengths and root position in metres)."""
    p = require_file(path, "ASF skeleton file")
    lines = [(i + 1, ln.split("#")[0].strip()) for i, ln in enumerate(p.read_text(errors="replace").splitlines())]
    lines = [(i, ln) for i, ln in lines if ln]
    length_unit, deg = 1.0, True
    root = {"order": ("tx", "ty", "tz", "rx", "ry", "rz"), "axis": "XYZ", "position": np.zeros(3),
            "orientation": np.zeros(3)}  # fmt: skip
    bones: dict[str, dict] = {}
    parents: dict[str, str] = {}
    section = None
    cur: dict | None = None
    for no, ln in lines:
        tok = ln.split()
        if tok[0].startswith(":"):
            section = tok[0].lower()
            continue
        key = tok[0].lower()
        if section == ":units":
            if key == "length":
                length_unit = float(_floats(p, no, tok[1:2], 1)[0])
                if length_unit <= 0:
                    raise ValueError(f"{p}:{no}: expected a positive length unit, found {tok[1]}")
            elif key == "angle":
                deg = tok[1].lower().startswith("deg")
        elif section == ":root":
            if key == "order":
                root["order"] = tuple(t.lower() for t in tok[1:])
            elif key == "axis":
                root["axis"] = tok[1].upper()
            elif key == "position":
                root["position"] = _floats(p, no, tok[1:], 3)
            elif key == "orientation":
                root["orientation"] = _floats(p, no, tok[1:], 3)
        elif section == ":bonedata":
            if key == "begin":
                cur = {"axis": np.zeros(3), "axis_order": "XYZ", "dof": (), "line": no}
            elif key == "end":
                if cur is None or "name" not in cur:
                    raise ValueError(f"{p}:{no}: bone block without a name")
                for need in ("direction", "length"):
                    if need not in cur:
                        raise ValueError(f"{p}:{cur['line']}: bone {cur['name']!r} has no {need}")
                bones[cur["name"]] = cur
                cur = None
            elif cur is not None:
                if key == "name":
                    cur["name"] = tok[1]
                elif key == "direction":
                    cur["direction"] = _floats(p, no, tok[1:], 3)
                elif key == "length":
                    cur["length"] = float(_floats(p, no, tok[1:2], 1)[0])
                elif key == "axis":
                    cur["axis"] = _floats(p, no, tok[1:4], 3)
                    cur["axis_order"] = tok[4].upper() if len(tok) > 4 else "XYZ"
                elif key == "dof":
                    cur["dof"] = tuple(t.lower() for t in tok[1:])
        elif section == ":hierarchy":
            if key in ("begin", "end"):
                continue
            for child in tok[1:]:
                parents[child] = tok[0]
    if not bones:
        raise ValueError(f"{p}: expected a :bonedata section with bones, found none")
    missing = sorted(set(bones) - set(parents))
    if missing:
        raise ValueError(f"{p}: bones without a parent in :hierarchy: {missing}")
    unknown = sorted({v for v in parents.values() if v != "root" and v not in bones})
    if unknown:
        raise ValueError(f"{p}: :hierarchy names unknown parents {unknown}")
    to_m = INCH / length_unit
    ang = 1.0 if deg else 180.0 / np.pi
    order = list(bones)  # file (id) order = joint order
    reach = {"root"}
    changed = True
    while changed:
        changed = False
        for name in order:
            if name not in reach and parents[name] in reach:
                reach.add(name)
                changed = True
    if len(reach) != len(bones) + 1:
        raise ValueError(f"{p}: :hierarchy does not connect bones {sorted(set(bones) - reach)} to the root")
    out = []
    for name in order:
        b = bones[name]
        d = b["direction"]
        n = np.linalg.norm(d)
        if n == 0:
            raise ValueError(f"{p}:{b['line']}: bone {name!r} has a zero direction")
        for dof in b["dof"]:
            if dof not in ("rx", "ry", "rz"):
                raise ValueError(f"{p}:{b['line']}: bone {name!r}: unsupported dof {dof!r} (expected rx/ry/rz)")
        out.append(Bone(name, parents[name], d / n, b["length"] * to_m, b["axis"] * ang, b["axis_order"], b["dof"]))
    return Skeleton(
        bones=out,
        root_position=root["position"] * to_m,
        root_orientation=root["orientation"] * ang,
        root_axis_order=root["axis"],
        root_dof_order=root["order"],
        amc_units=(to_m, ang),
    )


def load_amc(path: str | Path, skeleton: Skeleton):
    """Parse an Acclaim motion file for ``skeleton`` (from :func:`load_asf`, whose units it uses).

    Returns (root_values (F, 6) metres/degrees, bone_values dict name -> (F, len(dof)) degrees).
    """
    p = require_file(path, "AMC motion file")
    to_m, ang = skeleton.amc_units
    dofs = {b.name: len(b.dof) for b in skeleton.bones}
    frames: list[dict[str, np.ndarray]] = []
    cur: dict[str, np.ndarray] | None = None
    for no, raw in enumerate(p.read_text(errors="replace").splitlines(), start=1):
        ln = raw.split("#")[0].strip()
        if not ln or ln.startswith(":"):
            continue
        tok = ln.split()
        if len(tok) == 1 and tok[0].isdigit():
            cur = {}
            frames.append(cur)
            continue
        if cur is None:
            raise ValueError(f"{p}:{no}: expected a frame number before bone values, found {ln!r}")
        name = tok[0]
        if name == "root":
            cur["root"] = _floats(p, no, tok[1:], len(skeleton.root_dof_order))
        elif name in dofs:
            cur[name] = _floats(p, no, tok[1:], dofs[name])
        else:
            raise ValueError(f"{p}:{no}: bone {name!r} is not in the skeleton")
    if not frames:
        raise ValueError(f"{p}: expected at least one frame, found none")
    for k, fr in enumerate(frames):
        if "root" not in fr:
            raise ValueError(f"{p}: frame {k + 1} has no root line")
    F = len(frames)
    root = np.stack([fr["root"] for fr in frames])
    scale = np.array([to_m if n.startswith("t") else ang for n in skeleton.root_dof_order])
    root = root * scale
    values = {}
    for b in skeleton.bones:
        if b.dof:
            values[b.name] = np.stack([fr.get(b.name, np.zeros(len(b.dof))) for fr in frames]) * ang
    assert all(v.shape[0] == F for v in values.values())
    return root, values


@dataclass
class MocapSequence:
    """Joint trajectories from motion capture.

    Attributes:
        joints: (F, J, 3) joint positions in metres (Y up for CMU), J = 31 for CMU skeletons.
        joint_names: J names (``root`` then the bones).
        bones: (parent, child) joint index pairs.
        skeleton: the parsed :class:`Skeleton`.
        name: file stem.
    """

    joints: torch.Tensor
    joint_names: list[str]
    bones: list[tuple[int, int]]
    skeleton: Skeleton
    name: str = ""


def load_cmu_mocap(asf: str | Path, amc: str | Path, dtype: torch.dtype = torch.float32) -> MocapSequence:
    """Read a CMU ``.asf`` + ``.amc`` pair and run forward kinematics: joints (F, 31, 3) in metres."""
    sk = load_asf(asf)
    root, values = load_amc(amc, sk)
    J = forward_kinematics(sk, root, values)
    return MocapSequence(torch.as_tensor(J, dtype=dtype), sk.joint_names, sk.bone_pairs, sk, Path(amc).stem)


def mocap_to_nrsfm(
    seq: MocapSequence,
    camera: str = "random",
    noise_ratio: float = 0.0,
    missing_ratio: float = 0.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> NRSfMSequence:
    """Orthographic NRSfM views of motion-capture joints (same conventions as ``synthetic_nrsfm``)."""
    from nrsfm_kit.data.nrsfm import views_from_shapes

    S = seq.joints.detach().cpu().double().numpy()
    return views_from_shapes(S, camera, noise_ratio, missing_ratio, seed, list(seq.bones), f"cmu-{seq.name}", dtype)


def _fmt(v) -> str:
    return " ".join(f"{x:.6f}" for x in np.atleast_1d(v))


def write_asf(path: str | Path, skeleton: Skeleton, length_unit: float = 0.45) -> Path:
    """Write ``skeleton`` as an Acclaim ASF file (CMU units: ``length`` ``length_unit``, degrees)."""
    to_file = length_unit / INCH
    lines = [
        ":version 1.10", ":name nrsfm-kit", ":units", "  mass 1.0", f"  length {length_unit}", "  angle deg",
        ":documentation", "  written by nrsfm_kit.data.mocap.write_asf", ":root",
        f"   order {' '.join(n.upper() for n in skeleton.root_dof_order)}", f"   axis {skeleton.root_axis_order}",
        f"   position {_fmt(skeleton.root_position * to_file)}", f"   orientation {_fmt(skeleton.root_orientation)}",
        ":bonedata",
    ]  # fmt: skip
    for i, b in enumerate(skeleton.bones, start=1):
        lines += ["  begin", f"     id {i}", f"     name {b.name}", f"     direction {_fmt(b.direction)}",
                  f"     length {b.length * to_file:.6f}", f"     axis {_fmt(b.axis)} {b.axis_order}"]  # fmt: skip
        if b.dof:
            lines.append(f"    dof {' '.join(b.dof)}")
            lines.append("    limits " + "\n           ".join("(-180.0 180.0)" for _ in b.dof))
        lines.append("  end")
    lines += [":hierarchy", "  begin"]
    kids: dict[str, list[str]] = {}
    for b in skeleton.bones:
        kids.setdefault(b.parent, []).append(b.name)
    lines += [f"    {par} {' '.join(ch)}" for par, ch in kids.items()]
    lines += ["  end", ""]
    return atomic_write_text(path, "\n".join(lines))


def write_amc(
    path: str | Path, skeleton: Skeleton, root_values: np.ndarray, bone_values: dict, length_unit: float = 0.45
) -> Path:
    """Write a motion (root values in metres/degrees, bone values in degrees) as an Acclaim AMC file."""
    to_file = length_unit / INCH
    scale = np.array([to_file if n.startswith("t") else 1.0 for n in skeleton.root_dof_order])
    lines = ["# written by nrsfm_kit.data.mocap.write_amc", ":FULLY-SPECIFIED", ":DEGREES"]
    for f in range(root_values.shape[0]):
        lines.append(str(f + 1))
        lines.append(f"root {_fmt(root_values[f] * scale)}")
        for b in skeleton.bones:
            if b.dof:
                lines.append(f"{b.name} {_fmt(np.asarray(bone_values[b.name])[f])}")
    return atomic_write_text(path, "\n".join(lines) + "\n")
