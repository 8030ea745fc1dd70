"""Synthetic generators with exact ground truth and loaders for the real dataset formats.

NRSfM convention (see :mod:`nrsfm_kit.data.nrsfm`): ``S`` is in the CAMERA frame (W = S[..., :2]),
``cameras[f]`` are the first two rows of the world -> camera rotation, W = S_world M_f^T.

Names load lazily (PEP 562): ``import nrsfm_kit.data.cli`` does not import torch.
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "deepdeform": ["DeepDeformLabel", "DeepDeformPairs", "load_deepdeform_labels", "load_deepdeform_pair",
                   "read_flow_binary", "save_deepdeform_pair", "write_flow_binary"],
    "deepdeform_sequence": ["DeepDeformSequence", "SequenceMatches", "export_synthetic_sequence",
                            "load_deepdeform_sequence", "synthetic_sequence"],
    "mocap": ["MocapSequence", "load_amc", "load_asf", "load_cmu_mocap", "mocap_to_nrsfm"],
    "nrsfm": ["NRSfMFrames", "center_sequence", "check_sequence", "load_nrsfm_mat", "save_nrsfm_mat",
              "synthetic_nrsfm", "views_from_shapes"],
    "pascal3d": ["load_c3dpo_keypoints", "save_c3dpo_keypoints"],
    "rgbd": ["SyntheticRGBDPair", "SyntheticRGBDPairs", "SyntheticRGBDSequence", "synthetic_rgbd_pair",
             "synthetic_rgbd_sequence"],
    "sintel": ["SINTEL_CROP", "SintelScene", "find_sintel_scene", "load_sintel_protocol", "load_sintel_scene",
               "read_cam", "read_dpt", "read_flo", "write_cam", "write_dpt", "write_flo"],
    "types": ["MonocularVideo", "NRSfMSequence", "RGBDPair", "RGBDSequence"],
    "video": ["VideoFramePairs", "synthetic_monocular_video"],
    "volumedeform": ["list_volumedeform_frames", "load_volumedeform_sequence", "save_volumedeform_sequence"],
})
