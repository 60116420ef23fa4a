"""Lung segmentation networks: ResNet encoders, semantic-guided attention, UNet."""

from .encoders import ENCODERS, ResNetEncoder
from .unet import ATTENTIONS, UNet, create_model

__all__ = ["ENCODERS", "ATTENTIONS", "ResNetEncoder", "UNet", "create_model"]
