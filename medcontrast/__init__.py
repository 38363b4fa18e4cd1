"""medcontrast: self-supervised contrastive learning for medical images.

Pretrain an encoder on an unlabeled archive (DICOM, NIfTI, PNG/JPEG, MedMNIST ``.npz``), then
measure how many labels it saves with few-shot probes and fine-tuning.
"""

from medcontrast._version import __version__

__all__ = ["__version__", "embed", "load_encoder", "preprocess", "set_threads"]


def load_encoder(path, map_location="cpu"):
    """Rebuild a pretrained encoder from a run folder or its ``encoder.pth`` (see export.py)."""
    from medcontrast.export import load_encoder as _load

    return _load(path, map_location)


def preprocess(image, encoder, *, modality=None, spacing=None, affine=None):
    """A file or array -> the float32 (1, *size) input the encoder of run folder ``encoder``
    takes, preprocessed exactly as in its pretraining (see encoder_input.py)."""
    from medcontrast.encoder_input import preprocess_input

    return preprocess_input(image, encoder, modality=modality, spacing=spacing, affine=affine)


def embed(run, inputs, out=None, **kwargs):
    """Features of every usable image of ``inputs`` (folders, files, manifests) by the encoder
    of run folder ``run``, as a pandas table of pseudonyms and features (see embedding.py);
    written to ``out`` (.parquet or .npz) when given."""
    from medcontrast.embedding import embed as _embed

    return _embed(run, inputs, out, **kwargs)


def set_threads(n=None):
    """Cap torch, NumPy's BLAS and medcontrast's worker pools at ``n`` CPU threads (None:
    ``MEDCONTRAST_THREADS``, else every core); what ``--threads`` does (see threads.py)."""
    from medcontrast.threads import set_threads as _set

    return _set(n)
