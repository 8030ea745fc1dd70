"""DeepDeform (Bozic et al., CVPR 2020): the Siamese heatmap matcher, its benchmark, tracker and dense labels.

- :mod:`.data`: 6-channel patches (RGB + XYZ), augmentation, non-rigid patch sampling, synthetic pairs.
- :mod:`.losses`: heatmap (BCE + NLL), depth and visibility losses (sec. 3); the network is
  :class:`nrsfm_kit.models.matcher.SiameseMatcher`.
- :mod:`.training`: the two stages (heatmap + depth, then visibility) through the one loop; presets.
- :mod:`.inference`: matches = argmax of H, predicted depth, visibility, rejection rules (sec. 4.2).
- :mod:`.baselines`: SIFT / ORB / AKAZE / FPFH / DIS matchers on the same points; :mod:`.evaluate`: Table 1.
- :mod:`.tracker`: the learned term E_learned in the solver and the DeepDeform tracker (sec. 4.2, App. B).
- :mod:`.alignment`: projective non-rigid alignment and the semi-supervised dense alignment (App. D).
- :mod:`.pair`, :mod:`.cli`: one real pair (``nrsfm-kit match pair``), the command line.

Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "data": ["PATCH_CHANNELS", "SamplingConfig", "PatchBatch", "PreparedPair", "PatchSampler", "frame_image",
             "extract_patches", "image_to_patch", "patch_to_image", "prepare_pair", "synthetic_matching_pairs",
             "resize_pair"],
    "losses": ["MatcherLossConfig", "gaussian_heatmap", "heatmap_loss", "depth_loss", "visibility_loss",
               "matcher_loss"],
    "training": ["MATCHER_STAGES", "MatcherStage", "MatcherTrainingPreset", "TRAINING_PRESETS", "matcher_preset",
                 "train_matcher", "save_matcher", "load_matcher", "SHIPPED_MATCHER"],
    "inference": ["MIN_VISIBILITY", "MAX_DEPTH_DIFFERENCE", "Matches", "match_points"],
    "baselines": ["BASELINES", "DEEPDEFORM_WINDOW", "match_baseline"],
    "evaluate": ["TABLE_METHODS", "METHOD_LABELS", "matching_table", "beats_baselines", "tracking_table"],
    "tracker": ["DeepDeformTrackerConfig", "DeepDeformTrack", "node_matches", "learned_terms", "track_deepdeform"],
    "alignment": ["AlignmentConfig", "AlignmentResult", "PixelMatches", "align", "dense_alignment",
                  "write_dense_alignment", "flow_endpoint_errors", "simulate_sparse_matches", "depth_normals"],
    "pair": ["match_pair", "matches_json"],
})
