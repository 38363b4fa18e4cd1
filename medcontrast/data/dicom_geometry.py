"""Geometry of DICOM images: slice normals, positions and RAS affines.

DICOM patient coordinates are LPS; MONAI and NIfTI use RAS. Arrays built from DICOM here are
indexed (column, row, slice) so that the first spatial axis follows the row direction cosine,
like ITK and MONAI's readers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of an image plane from ImageOrientationPatient (row cosine, column cosine)."""
    iop = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else normal


def ras_affine(
    orientation: Sequence[float],
    first_position: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_step: float,
) -> np.ndarray:
    """4x4 RAS affine for an array indexed (column, row, slice).

    Args:
        orientation: ImageOrientationPatient, 6 values.
        first_position: ImagePositionPatient of the first slice in array order.
        pixel_spacing: DICOM PixelSpacing, (row spacing, column spacing) in mm.
        slice_step: signed distance between consecutive slices along the normal, in mm.
    """
    iop = np.asarray(orientation, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    row_spacing, col_spacing = float(pixel_spacing[0]), float(pixel_spacing[1])
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing  # moving along a row = increasing column index
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = slice_normal(iop) * slice_step
    lps[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return LPS_TO_RAS @ lps


def order_by_position(
    positions: Sequence[Sequence[float]], orientation: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Indices that sort slices by their position along the slice normal, and those positions.

    Returns:
        (order, distances): ``order`` sorts the inputs ascending along the normal;
        ``distances`` are the sorted signed distances in mm.
    """
    normal = slice_normal(orientation)
    dist = np.asarray(positions, dtype=np.float64) @ normal
    order = np.argsort(dist, kind="stable")
    return order, dist[order]
