"""Encoders (timm 2D, MONAI 2D/3D) and projection/prediction heads."""
