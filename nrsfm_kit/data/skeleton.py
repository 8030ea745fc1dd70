"""A CMU-like 31-joint skeleton, Acclaim (ASF/AMC) forward kinematics and procedural motions.

The CMU Motion Capture skeletons have a root and 30 bones; the 31 "joints" are the root position and
the end point of every bone. Forward kinematics follows the Acclaim convention (as in the CMU files):

    L_b = C_b M_b(frame) C_b^{-1},      G_b = G_parent L_b,      p_b = p_parent + length_b G_b d_b

with C_b the bone's fixed ``axis`` rotation, M_b the rotation from the bone's degrees of freedom in
the frame, d_b the bone's rest direction (global frame) and p_b its end point. An Euler order string
such as ``"XYZ"`` means: rotate about X first, then Y, then Z, i.e. R = R_z R_y R_x (column vectors).

The built-in skeleton (:func:`cmu_skeleton`) is our own approximation of an adult CMU subject in metres
(Y up, the subject faces +Z, its left is +X, arms hanging at rest); the procedural motions drive the
same degrees of freedom as the CMU ``.amc`` files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nrsfm_kit.data._args import check_int

# ASF length unit -> metres: CMU lengths are in inches / 0.45 (``:units length 0.45``).
INCH = 0.0254


@dataclass
class Bone:
    """One bone of an Acclaim skeleton.

    Attributes:
        name: bone name (CMU names, e.g. ``"lfemur"``).
        parent: parent bone name (``"root"`` for the top bones).
        direction: (3,) unit rest direction in the global frame.
        length: bone length in metres.
        axis: (3,) fixed axis angles in degrees (the ASF ``axis`` line).
        axis_order: Euler order of ``axis`` (e.g. ``"XYZ"``).
        dof: degrees of freedom in the order the ``.amc`` lists them, subset of ``("rx", "ry", "rz")``.
    """

    name: str
    parent: str
    direction: np.ndarray
    length: float
    axis: np.ndarray = field(default_factory=lambda: np.zeros(3))
    axis_order: str = "XYZ"
    dof: tuple[str, ...] = ()


@dataclass
class Skeleton:
    """An Acclaim skeleton: a root and bones listed parents-first.

    Attributes:
        bones: the bones; their order is the joint order (after the root).
        root_position: (3,) metres, the ASF root ``position``.
        root_orientation: (3,) degrees, the ASF root ``orientation`` (its axis).
        root_axis_order: Euler order of the root orientation (``"XYZ"``).
        root_dof_order: order of the root's 6 values in an ``.amc`` frame (``TX TY TZ RX RY RZ``).
        amc_units: factors converting ``.amc`` values of this skeleton's file to metres and degrees.
    """

    bones: list[Bone]
    root_position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    root_orientation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    root_axis_order: str = "XYZ"
    root_dof_order: tuple[str, ...] = ("tx", "ty", "tz", "rx", "ry", "rz")
    amc_units: tuple[float, float] = (1.0, 1.0)  # (.amc length -> metres, .amc angle -> degrees)

    @property
    def joint_names(self) -> list[str]:
        """``["root", bone names...]``: the order of the joints returned by :func:`forward_kinematics`."""
        return ["root"] + [b.name for b in self.bones]

    @property
    def bone_pairs(self) -> list[tuple[int, int]]:
        """(parent joint index, child joint index) for every bone, to draw the skeleton."""
        index = {n: i for i, n in enumerate(self.joint_names)}
        return [(index[b.parent], index[b.name]) for b in self.bones]

    def bone(self, name: str) -> Bone:
        for b in self.bones:
            if b.name == name:
                return b
        raise KeyError(f"bone {name!r} not in the skeleton (bones: {[b.name for b in self.bones]})")


def euler_matrix(angles_deg: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """Rotation matrices from Euler angles in degrees, applied in ``order`` (first letter first).

    Args:
        angles_deg: (..., 3) angles about X, Y, Z (in this fixed x, y, z slot order) in degrees.
        order: permutation of ``"XYZ"``; ``"XYZ"`` gives R = R_z R_y R_x.
    Returns:
        (..., 3, 3) rotation matrices acting on column vectors.
    """
    order = order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"order: expected a permutation of 'XYZ', found {order!r}")
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(c[..., 0]), np.zeros_like(c[..., 0])

    def rot(k: int) -> np.ndarray:
        ck, sk = c[..., k], s[..., k]
        if k == 0:
            rows = [one, zero, zero, zero, ck, -sk, zero, sk, ck]
        elif k == 1:
            rows = [ck, zero, sk, zero, one, zero, -sk, zero, ck]
        else:
            rows = [ck, -sk, zero, sk, ck, zero, zero, zero, one]
        return np.stack(rows, axis=-1).reshape(*ck.shape, 3, 3)

    R = None
    for letter in order:  # first letter applied first -> leftmost product is the last one
        k = "XYZ".index(letter)
        if not a[..., k].any():  # identity factor: skip (cheap for 1- and 2-dof bones)
            continue
        R = rot(k) if R is None else rot(k) @ R
    return np.broadcast_to(np.eye(3), (*a.shape[:-1], 3, 3)).copy() if R is None else R


def forward_kinematics(
    skeleton: Skeleton,
    root_values: np.ndarray,
    bone_values: dict[str, np.ndarray],
) -> np.ndarray:
    """Joint positions of an Acclaim skeleton for F frames.

    Args:
        skeleton: the skeleton (lengths and root translation in metres).
        root_values: (F, 6) root values in ``skeleton.root_dof_order`` (translations in metres,
            rotations in degrees).
        bone_values: bone name -> (F, len(dof)) angles in degrees in the bone's ``dof`` order;
            missing bones keep their rest pose.
    Returns:
        (F, 1 + num_bones, 3) joint positions in metres, in ``skeleton.joint_names`` order.
    """
    root_values = np.asarray(root_values, dtype=np.float64)
    if root_values.ndim != 2 or root_values.shape[1] != len(skeleton.root_dof_order):
        raise ValueError(
            f"root_values: expected shape (F, {len(skeleton.root_dof_order)}), found {root_values.shape}"
        )
    if not np.isfinite(root_values).all():
        raise ValueError(f"root_values: expected finite values, found {int((~np.isfinite(root_values)).sum())} non-finite")
    F = root_values.shape[0]
    known = {b.name: b for b in skeleton.bones}
    for name, vals in bone_values.items():
        b = known.get(name)
        if b is None:
            raise ValueError(f"bone_values: bone {name!r} is not in the skeleton (bones: {sorted(known)})")
        a = np.asarray(vals, dtype=np.float64)
        if a.size != F * len(b.dof):
            raise ValueError(f"bone_values[{name!r}]: expected shape ({F}, {len(b.dof)}), found {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"bone_values[{name!r}]: expected finite angles, found non-finite values")
    trans = np.zeros((F, 3))
    rot = np.zeros((F, 3))
    for k, name in enumerate(skeleton.root_dof_order):
        slot = "xyz".index(name[1])
        (trans if name[0] == "t" else rot)[:, slot] = root_values[:, k]
    # the root's axis order also orders its dof rotations (Acclaim: ``order`` lists RX RY RZ)
    rot_order = "".join(n[1].upper() for n in skeleton.root_dof_order if n[0] == "r") or "XYZ"
    C = euler_matrix(skeleton.root_orientation, skeleton.root_axis_order)
    G = {"root": C @ euler_matrix(rot, rot_order) @ C.T}
    P = {"root": skeleton.root_position[None] + trans}
    names = {b.name for b in skeleton.bones}
    todo = list(skeleton.bones)
    while todo:  # parents before children, whatever the listing order
        ready = [b for b in todo if b.parent in G]
        if not ready:
            bad = sorted({b.parent for b in todo if b.parent not in names and b.parent != "root"})
            raise ValueError(f"skeleton: bones {[b.name for b in todo]} do not connect to the root (parents {bad})")
        for b in ready:
            angles = np.zeros((F, 3))
            vals = bone_values.get(b.name)
            if vals is not None and b.dof:
                vals = np.asarray(vals, dtype=np.float64).reshape(F, len(b.dof))
                for k, name in enumerate(b.dof):
                    angles[:, "xyz".index(name[1])] = vals[:, k]
            # the dof rotations are applied in the bone's axis order (CMU files use XYZ everywhere)
            if not angles.any():
                G[b.name] = G[b.parent]
            elif not np.any(b.axis):
                G[b.name] = G[b.parent] @ euler_matrix(angles, b.axis_order)
            else:
                C = euler_matrix(b.axis, b.axis_order)
                G[b.name] = G[b.parent] @ (C @ euler_matrix(angles, b.axis_order) @ C.T)
            P[b.name] = P[b.parent] + b.length * (G[b.name] @ np.asarray(b.direction, dtype=np.float64))
        todo = [b for b in todo if b.name not in G]
    out = [P["root"]] + [P[b.name] for b in skeleton.bones]
    return np.stack(out, axis=1)


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def cmu_skeleton() -> Skeleton:
    """Our CMU-like 31-joint skeleton (root + the 30 CMU bone names), lengths in metres, arms at rest down."""
    R3 = ("rx", "ry", "rz")
    spec = [
        # name, parent, direction, length (m), dof
        ("lhipjoint", "root", _unit(0.7, -0.6, 0.25), 0.12, ()),
        ("lfemur", "lhipjoint", _unit(0.05, -1, 0), 0.42, R3),
        ("ltibia", "lfemur", _unit(0, -1, 0), 0.42, ("rx",)),
        ("lfoot", "ltibia", _unit(0, -0.35, 1), 0.14, ("rx", "rz")),
        ("ltoes", "lfoot", _unit(0, 0, 1), 0.06, ("rx",)),
        ("rhipjoint", "root", _unit(-0.7, -0.6, 0.25), 0.12, ()),
        ("rfemur", "rhipjoint", _unit(-0.05, -1, 0), 0.42, R3),
        ("rtibia", "rfemur", _unit(0, -1, 0), 0.42, ("rx",)),
        ("rfoot", "rtibia", _unit(0, -0.35, 1), 0.14, ("rx", "rz")),
        ("rtoes", "rfoot", _unit(0, 0, 1), 0.06, ("rx",)),
        ("lowerback", "root", _unit(0, 1, -0.05), 0.12, R3),
        ("upperback", "lowerback", _unit(0, 1, 0), 0.12, R3),
        ("thorax", "upperback", _unit(0, 1, 0.05), 0.12, R3),
        ("lowerneck", "thorax", _unit(0, 1, 0.1), 0.08, R3),
        ("upperneck", "lowerneck", _unit(0, 1, 0), 0.08, R3),
        ("head", "upperneck", _unit(0, 1, 0.05), 0.10, R3),
        ("lclavicle", "thorax", _unit(1, 0.15, 0), 0.17, ("ry", "rz")),
        ("lhumerus", "lclavicle", _unit(0.1, -1, 0), 0.28, R3),
        ("lradius", "lhumerus", _unit(0.05, -1, 0), 0.24, ("rx",)),
        ("lwrist", "lradius", _unit(0, -1, 0), 0.05, ("ry",)),
        ("lhand", "lwrist", _unit(0, -1, 0.05), 0.07, ("rx", "rz")),
        ("lfingers", "lhand", _unit(0, -1, 0), 0.04, ("rx",)),
        ("lthumb", "lwrist", _unit(0, -1, 0.7), 0.05, ("rx", "rz")),
        ("rclavicle", "thorax", _unit(-1, 0.15, 0), 0.17, ("ry", "rz")),
        ("rhumerus", "rclavicle", _unit(-0.1, -1, 0), 0.28, R3),
        ("rradius", "rhumerus", _unit(-0.05, -1, 0), 0.24, ("rx",)),
        ("rwrist", "rradius", _unit(0, -1, 0), 0.05, ("ry",)),
        ("rhand", "rwrist", _unit(0, -1, 0.05), 0.07, ("rx", "rz")),
        ("rfingers", "rhand", _unit(0, -1, 0), 0.04, ("rx",)),
        ("rthumb", "rwrist", _unit(0, -1, 0.7), 0.05, ("rx", "rz")),
    ]
    bones = [Bone(n, p, d, length, dof=dof) for n, p, d, length, dof in spec]
    return Skeleton(bones=bones, root_position=np.array([0.0, 0.95, 0.0]))


MOTIONS = ("walking", "waving", "bending")


def procedural_motion(
    skeleton: Skeleton, motion: str, num_frames: int, rng: np.random.Generator, fps: float = 30.0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Joint angles of a procedural motion for the built-in skeleton (CMU dof names).

    ``walking``: a gait cycle (about 1.1 s) with hip/knee/ankle flexion, counter-swinging arms, a slight
    torso twist, vertical bob and forward progression. ``waving``: the right arm raised sideways with the
    forearm waving (about 1.5 Hz), a swaying torso and a nodding head. ``bending``: bending forward at the
    spine and knees, reaching down, and back up (about 3 s per cycle). Phase, amplitudes and tempo vary
    with ``rng`` (+- 15 %).

    Returns:
        root_values (F, 6) in ``TX TY TZ RX RY RZ`` order (metres, degrees) and bone values
        (name -> (F, len(dof)) degrees), ready for :func:`forward_kinematics`.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion: expected one of {MOTIONS}, found {motion!r}")
    F = check_int("num_frames", num_frames, 1)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps: expected a finite value > 0, found {fps!r}")
    t = np.arange(F) / fps
    amp = lambda: float(rng.uniform(0.85, 1.15))
    phase0 = float(rng.uniform(0, 2 * math.pi))
    tempo = float(rng.uniform(0.9, 1.1))
    heading = float(rng.uniform(-30, 30))
    root = np.zeros((F, 6))
    root[:, 4] = heading
    vals: dict[str, np.ndarray] = {b.name: np.zeros((F, len(b.dof))) for b in skeleton.bones}

    def setv(name: str, dof: str, value: np.ndarray) -> None:
        vals[name][:, skeleton.bone(name).dof.index(dof)] = value

    # resting arm posture: slightly abducted
    setv("lhumerus", "rz", np.full(F, 8.0))
    setv("rhumerus", "rz", np.full(F, -8.0))
    if motion == "walking":
        phi = 2 * math.pi * t * tempo / 1.1 + phase0
        a_hip, a_knee, a_arm = 25 * amp(), 55 * amp(), 22 * amp()
        for side, sgn in (("l", 1.0), ("r", -1.0)):
            ph = phi if sgn > 0 else phi + math.pi
            setv(f"{side}femur", "rx", -a_hip * np.sin(ph))
            # knee flexes during swing (shin goes backwards: positive rx)
            setv(f"{side}tibia", "rx", 5 + a_knee * np.clip(np.sin(ph + 0.9), 0, None) ** 2)
            setv(f"{side}foot", "rx", -8 * np.sin(ph - 0.6))
            setv(f"{side}humerus", "rx", a_arm * np.sin(ph))
            setv(f"{side}radius", "rx", -20 - 12 * np.sin(ph + 0.4))
        setv("thorax", "ry", 6 * np.sin(phi))
        setv("lowerback", "ry", -3 * np.sin(phi))
        root[:, 1] = 0.015 * np.cos(2 * phi)
        speed = 1.2 * tempo  # m/s
        h = math.radians(heading)
        root[:, 0] = speed * t * math.sin(h)
        root[:, 2] = speed * t * math.cos(h)
    elif motion == "waving":
        phi = 2 * math.pi * t * tempo * 1.5 + phase0
        slow = 2 * math.pi * t * tempo * 0.4 + phase0
        setv("rhumerus", "rz", np.full(F, -135.0 * amp()))
        setv("rhumerus", "rx", -15 + 8 * np.sin(slow))
        setv("rradius", "rx", -45 * amp() + 35 * amp() * np.sin(phi))
        setv("rhand", "rz", 20 * np.sin(phi + 0.5))
        setv("lowerback", "rz", 5 * np.sin(slow))
        setv("thorax", "rz", 3 * np.sin(slow + 0.3))
        setv("head", "rx", 10 * np.sin(slow * 1.7))
        setv("head", "ry", 15 * np.sin(slow))
        setv("lhumerus", "rx", 6 * np.sin(slow))
        setv("lradius", "rx", np.full(F, -15.0))
    else:  # bending
        phi = 2 * math.pi * t * tempo / 3.0 + phase0
        bend = 0.5 * (1 - np.cos(phi))  # 0 upright .. 1 fully bent
        for name in ("lowerback", "upperback", "thorax"):
            setv(name, "rx", 28 * amp() * bend)
        setv("lowerneck", "rx", -15 * bend)
        for side in "lr":
            setv(f"{side}femur", "rx", -35 * amp() * bend)
            setv(f"{side}tibia", "rx", 50 * amp() * bend)
            setv(f"{side}foot", "rx", -15 * bend)
            setv(f"{side}humerus", "rx", -40 * bend)
            setv(f"{side}radius", "rx", -10 * bend)
        setv("lowerback", "ry", 10 * np.sin(phi / 2))
        root[:, 1] = -0.25 * bend
    return root, vals
