"""Multi-crop (Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", NeurIPS 2020; used by DINO, ICCV 2021): besides the two global views, several small
local crops that the student must match to the teacher's global view.

The local crops are cut from the two augmented global views on the device, the whole batch in one
``affine_grid`` + ``grid_sample``: they inherit the global views' intensity augmentation and add
their own box and scale. Cutting them from the views rather than from the raw images makes them
work alike in both view paths (MONAI in the loader, batched on the device) at the cost of one
resampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medcontrast.errors import MedContrastError


class LocalCrops:
    """Callable: two (B, C, *size) global views -> (n * B, C, *local) local crops.

    Crop ``j`` of sample ``i`` (row ``j * B + i``) is cut from view ``j % 2`` with a box whose side
    along each axis is a fraction ~ U(scale) of the view's, at a uniform random position inside
    it, resized to ``local = round(size_fraction * size)`` per axis.
    """

    def __init__(self, n: int, size_fraction: float, scale: tuple[float, float]) -> None:
        if n < 0:
            raise MedContrastError(f"method.local_crops must be 0 or more, not {n}")
        if not 0 < size_fraction <= 1:
            raise MedContrastError(f"method.local_size must be in (0, 1], not {size_fraction}")
        lo, hi = scale
        if not 0 < lo <= hi <= 1:
            raise MedContrastError(
                f"method.local_scale must be 0 < low <= high <= 1, not {list(scale)}"
            )
        self.n, self.size_fraction, self.scale = n, size_fraction, (lo, hi)

    def size_of(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """The local crops' spatial size for global views of ``size``."""
        return tuple(max(1, round(s * self.size_fraction)) for s in size)

    def __call__(
        self, view1: torch.Tensor, view2: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        b, c, *size = view1.shape
        nd, dev, rows = len(size), view1.device, self.n * b
        lo, hi = self.scale
        side = lo + (hi - lo) * torch.rand(rows, nd, generator=generator, device=dev)
        centre = (2 * torch.rand(rows, nd, generator=generator, device=dev) - 1) * (1 - side)
        # affine_grid reads its coordinates in (x, y[, z]) order: the array axes reversed.
        theta = torch.cat([torch.diag_embed(side.flip(-1)), centre.flip(-1)[..., None]], -1)
        source = torch.stack([view1, view2])[torch.arange(self.n, device=dev) % 2]
        source = source.reshape(rows, c, *size)
        local = self.size_of(tuple(size))
        grid = F.affine_grid(theta.to(view1.dtype), [rows, c, *local], align_corners=False)
        return F.grid_sample(
            source, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
