"""Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020): Phi + Psi + the differentiable solver.

- :mod:`.model`: the tracker Theta = Omega(Phi, Psi, V) (:class:`NeuralTracker`), target sampling, per-pair solves.
- :mod:`.losses`: L_corr (eq. 14, 21), L_graph, L_warp (eq. 15-16) and the invalidation of diverged solves.
- :mod:`.training`: the four stages (flow, solver, mask, refine), the supervised Psi baseline, presets.
- :mod:`.evaluate`: EPE 3D / Graph Error 3D over a set of pairs and the Table 1 ablation.
- :mod:`.data`: synthetic training / test pairs with exact ground truth, DeepDeform pairs.
- :mod:`.io`, :mod:`.pair`: cropping, DIS correspondences, graph folders, output files; tracking one real pair.

Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "losses": ["LossWeights", "PRESETS", "correspondence_loss", "downsample_flow", "graph_loss", "warp_loss",
               "valid_solves", "robust_qnorm"],
    "model": ["TrackerConfig", "NeuralTracker", "TrackResult", "sample_targets", "point_images", "stack_samples",
              "CORRESPONDENCE_SOURCES"],
    "training": ["STAGES", "StageConfig", "TrainingPreset", "TRAINING_PRESETS", "train_stage", "train_tracker",
                 "supervised_weight_targets", "load_tracker", "save_tracker", "preset"],
    "evaluate": ["evaluate", "ablation", "ABLATION_ROWS", "LEARNED_ROWS", "paper_ordering", "summarise"],
    "data": ["TrackingSample", "sample_from_pair", "synthetic_tracking_pairs", "flow_pretraining_pairs",
             "node_translations_from_scene_flow", "deepdeform_samples", "SPLIT_SEEDS"],
    "io": ["CROP_SIZE", "DIS_PRESETS", "OUTPUT_FILES", "center_crop_offsets", "crop_intrinsics", "center_crop_pair",
           "dis_flow", "object_mask_from_nodes", "read_graph_folder", "write_ply", "write_tracking_outputs"],
    "pair": ["read_rgbd_pair", "track_pair", "crop_size_for"],
})
