"""Networks shared by several methods (ResNet-18 encoder, U-Net decoders, depth and motion nets,
PWC-Net, weight net).

Names load lazily (PEP 562).
"""

from nrsfm_kit.utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "decoders": ["DECODER_CHANNELS", "UNetDecoder"],
    "depth_net": ["DepthNet", "DepthNetConfig", "sigmoid_to_depth"],
    "motion_net": ["EMBED_DIM", "MotionNet"],
    "pwcnet": ["PWCDCNet", "PWCNetConfig", "backward_warp", "correlation_torch", "load_pwcnet_state_dict"],
    "resnet": ["BasicBlock", "NORMALISATIONS", "ResNet18Encoder", "check_resnet18_weights", "count_parameters",
               "load_resnet18_weights"],
    "weightnet": ["WeightNet", "WeightNetConfig"],
})
