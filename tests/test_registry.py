import pytest

from medcontrast.errors import MedContrastError
from medcontrast.methods import METHODS
from medcontrast.models.encoders import build_encoder


def test_unknown_method_suggests_names():
    with pytest.raises(MedContrastError, match="Did you mean 'simclr'"):
        METHODS.get("simclrr")


def test_unknown_encoder_names():
    with pytest.raises(MedContrastError, match="resnet18"):
        build_encoder("timm:resnet81", 2)
    with pytest.raises(MedContrastError, match="resnet18"):
        build_encoder("monai:resnt18", 3)
    with pytest.raises(MedContrastError, match="must start with"):
        build_encoder("resnet18", 2)
    with pytest.raises(MedContrastError, match="2D timm model"):
        build_encoder("timm:resnet18", 3)
