"""medcontrast: self-supervised contrastive learning for medical images.

Pretrain an encoder on an unlabeled archive (DICOM, NIfTI, PNG/JPEG, MedMNIST ``.npz``), then
measure how many labels it saves with few-shot probes and fine-tuning.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
