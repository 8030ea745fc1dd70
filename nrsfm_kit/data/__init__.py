"""Synthetic generators with exact ground truth and loaders for the real dataset formats.

NRSfM convention (see :mod:`nrsfm_kit.data.nrsfm`): ``S`` is in the CAMERA frame (W = S[..., :2]),
``cameras[f]`` are the first two rows of the world -> camera rotation, W = S_world M_f^T.
"""

from nrsfm_kit.data.deepdeform import (
    DeepDeformLabel,
    DeepDeformPairs,
    load_deepdeform_labels,
    load_deepdeform_pair,
    read_flow_binary,
    save_deepdeform_pair,
    write_flow_binary,
)
from nrsfm_kit.data.mocap import MocapSequence, load_amc, load_asf, load_cmu_mocap, mocap_to_nrsfm
from nrsfm_kit.data.nrsfm import (
    NRSfMFrames,
    center_sequence,
    check_sequence,
    load_nrsfm_mat,
    save_nrsfm_mat,
    synthetic_nrsfm,
    views_from_shapes,
)
from nrsfm_kit.data.pascal3d import load_c3dpo_keypoints, save_c3dpo_keypoints
from nrsfm_kit.data.rgbd import (
    SyntheticRGBDPair,
    SyntheticRGBDPairs,
    SyntheticRGBDSequence,
    synthetic_rgbd_pair,
    synthetic_rgbd_sequence,
)
from nrsfm_kit.data.sintel import (
    load_sintel_scene,
    read_cam,
    read_dpt,
    read_flo,
    write_cam,
    write_dpt,
    write_flo,
)
from nrsfm_kit.data.types import MonocularVideo, NRSfMSequence, RGBDPair, RGBDSequence
from nrsfm_kit.data.video import VideoFramePairs, synthetic_monocular_video
from nrsfm_kit.data.volumedeform import (
    list_volumedeform_frames,
    load_volumedeform_sequence,
    save_volumedeform_sequence,
)

__all__ = [
    "DeepDeformLabel",
    "DeepDeformPairs",
    "MocapSequence",
    "MonocularVideo",
    "NRSfMFrames",
    "NRSfMSequence",
    "RGBDPair",
    "RGBDSequence",
    "SyntheticRGBDPair",
    "SyntheticRGBDPairs",
    "SyntheticRGBDSequence",
    "VideoFramePairs",
    "center_sequence",
    "check_sequence",
    "list_volumedeform_frames",
    "load_amc",
    "load_asf",
    "load_c3dpo_keypoints",
    "load_cmu_mocap",
    "load_deepdeform_labels",
    "load_deepdeform_pair",
    "load_nrsfm_mat",
    "load_sintel_scene",
    "load_volumedeform_sequence",
    "mocap_to_nrsfm",
    "read_cam",
    "read_dpt",
    "read_flo",
    "read_flow_binary",
    "save_c3dpo_keypoints",
    "save_deepdeform_pair",
    "save_nrsfm_mat",
    "save_volumedeform_sequence",
    "synthetic_monocular_video",
    "synthetic_nrsfm",
    "synthetic_rgbd_pair",
    "synthetic_rgbd_sequence",
    "views_from_shapes",
    "write_cam",
    "write_dpt",
    "write_flo",
    "write_flow_binary",
]
