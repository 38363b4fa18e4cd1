"""medcontrast: self-supervised contrastive learning for medical images.

Pretrain an encoder on an unlabeled archive (DICOM, NIfTI, PNG/JPEG, MedMNIST ``.npz``), then
measure how many labels it saves with few-shot probes and fine-tuning.
"""

from medcontrast._version import __version__

__all__ = ["__version__", "load_encoder"]


def load_encoder(path, map_location="cpu"):
    """Rebuild a pretrained encoder from a run folder or its ``encoder.pth`` (see export.py)."""
    from medcontrast.export import load_encoder as _load

    return _load(path, map_location)
