"""Networks shared by several methods (ResNet-18 encoder, U-Net decoders, depth and motion nets)."""

from nrsfm_kit.models.decoders import DECODER_CHANNELS, UNetDecoder
from nrsfm_kit.models.depth_net import DepthNet, DepthNetConfig, sigmoid_to_depth
from nrsfm_kit.models.motion_net import EMBED_DIM, MotionNet
from nrsfm_kit.models.resnet import BasicBlock, ResNet18Encoder, count_parameters

__all__ = [
    "BasicBlock", "DECODER_CHANNELS", "DepthNet", "DepthNetConfig", "EMBED_DIM", "MotionNet",
    "ResNet18Encoder", "UNetDecoder", "count_parameters", "sigmoid_to_depth",
]
