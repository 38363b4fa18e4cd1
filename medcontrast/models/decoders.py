"""A light decoder from an encoder's feature map back to the input, for restoration pretraining.

It reads only the last feature map, without the skip connections of a U-Net (Models Genesis
restores with a full U-Net): what the decoder cannot take from earlier stages must pass through
the encoder's deepest features, the ones a linear probe and fine-tuning read. It is used only in
pretraining and never exported.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def _block(ndim: int, c_in: int, c_out: int) -> nn.Sequential:
    conv = (nn.Conv2d, nn.Conv3d)[ndim - 2]
    norm = (nn.BatchNorm2d, nn.BatchNorm3d)[ndim - 2]
    return nn.Sequential(conv(c_in, c_out, 3, padding=1, bias=False), norm(c_out), nn.ReLU(True))


class UpsamplingDecoder(nn.Module):
    """(B, channels, *grid) -> (B, out_channels, *size).

    A 1x1 convolution to ``width`` channels, then one block per doubling of the grid (upsample,
    3x3 convolution, batch norm, ReLU; the last block upsamples to exactly ``size``), each with
    half the channels of the one before (at least 8, as a U-Net's decoder narrows where the
    resolution is high: the cost stays flat in 3D), and a 3x3 convolution to ``out_channels``
    (no activation: it regresses intensities).
    """

    def __init__(
        self,
        channels: int,
        grid: tuple[int, ...],
        out_channels: int,
        size: tuple[int, ...],
        width: int = 64,
    ) -> None:
        super().__init__()
        ndim = len(size)
        conv = (nn.Conv2d, nn.Conv3d)[ndim - 2]
        ups = max(0, math.ceil(math.log2(max(s / g for s, g in zip(size, grid, strict=True)))))
        self.size = tuple(size)
        self.mode = ("bilinear", "trilinear")[ndim - 2]
        widths = [max(8, width // 2**i) for i in range(ups + 1)]
        self.reduce = conv(channels, width, 1)
        self.blocks = nn.ModuleList(_block(ndim, a, b) for a, b in itertools.pairwise(widths))
        self.out = conv(widths[-1], out_channels, 3, padding=1)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = self.reduce(fmap)
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            up = {"size": self.size} if last else {"scale_factor": 2}
            x = block(F.interpolate(x, **up, mode=self.mode, align_corners=False))
        if tuple(x.shape[2:]) != self.size:  # no block: the grid is the input's size already
            x = F.interpolate(x, size=self.size, mode=self.mode, align_corners=False)
        return self.out(x)
