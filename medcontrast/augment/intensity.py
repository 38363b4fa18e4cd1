"""Batched intensity steps with per-sample parameters, each a few tensor operations over the
whole batch (no per-sample loop, no per-step branch: a sample that skips a step gets the step's
neutral parameters). The distributions are those of the MONAI transforms named in each
docstring. Images are (B, C, *size), or flattened to (B, M) where the step is pointwise.
Ground floor: torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hist_curves(
    keep: torch.Tensor, last: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """The control values of MONAI's ``RandHistogramShift`` for a batch, at the reference points
    i / last, i = 0..last: inner value i ~ U(value i-1, reference i+1), drawn in order.

    With w_i ~ U(0, 1) that draw is f_i = f_{i-1} + w_i (r_{i+1} - f_{i-1}); the gap to the next
    reference, in units of 1 / last, h_i = (i + 1) - last f_i, then follows h_i = (1 - w_i)
    (1 + h_{i-1}), h_0 = 1, which unrolls to h_i = C_i (2 + sum_{m<i} 1 / C_m) with C the
    cumulative product of the 1 - w: a handful of batched operations instead of a loop over the
    points. ``keep`` = 1 - w of 0.5 everywhere gives h = 1, the identity curve (the neutral value
    of a sample that skips the step).

    keep: (B, J) in (0, 1], J = P - 2 inner points of the most points P; last: (B, 1) a
    sample's points - 1; index: (P + 1,) floats 0..P and the same plus 2. Returns (B, P + 1)
    values, 1 from index ``last`` on (one more than the points, so that :func:`piecewise`
    needs no bound check).
    """
    # Clamped: a keep of 0 (torch.rand may return 1 on some devices) or a product below float32's
    # range would give 0 * inf = NaN below; with the clamp the curve stays finite and monotone.
    # With C_i (1 / C_i) = 1 the value i + 1 - h_i is (i + 2) - C_i (2 + sum_{m<=i} 1 / C_m): one
    # operation fewer; exact for the identity curve (powers of two).
    prod = keep.cumprod(1).clamp_min(1e-30)
    gaps = prod * (prod.reciprocal().cumsum(1) + 2)  # h_i + 1
    index, after_next = index
    values = (after_next - F.pad(gaps, (1, 2), value=2.0)) / last
    return torch.where(index >= last, 1.0, values)


def piecewise(v: torch.Tensor, values: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """v (B, M) in [0, 1] mapped through the piecewise-linear curve through (i / last,
    values[:, i]) (``np.interp``, as MONAI's ``RandHistogramShift``). values: (B, P + 1) from
    :func:`hist_curves`; last: (B, 1)."""
    t = v * last
    # t >= 0: truncation is the floor. Clamped: a NaN pixel (NaN input) must not index out of
    # the curve, which on a GPU is a device-side assert that ends the process.
    seg = t.long().clamp_(0, values.shape[1] - 2)
    low, high = values.gather(1, seg), values.gather(1, seg + 1)
    return torch.lerp(low, high, torch.frac(t))


def legendre(t: torch.Tensor, degree: int) -> torch.Tensor:
    """(degree + 1, len(t)) Legendre polynomials P_0..P_degree at t."""
    polys = [torch.ones_like(t), t]
    for k in range(1, degree):
        polys.append(((2 * k + 1) * t * polys[k] - k * polys[k - 1]) / (k + 1))
    return torch.stack(polys[: degree + 1])


def bias_terms(nd: int, degree: int = 3) -> list[tuple[int, ...]]:
    """The polynomial terms of MONAI's ``RandBiasField``: i >= j in 2D (``np.tril_indices``),
    i + j + k <= degree in 3D."""
    r = range(degree + 1)
    if nd == 2:
        return [(i, j) for i in r for j in r if i >= j]
    return [(i, j, k) for i in r for j in r for k in r if i + j + k <= degree]


def bias_basis(size: tuple[int, ...], dev: torch.device, degree: int = 3) -> torch.Tensor:
    """(T, V) the terms of :func:`bias_terms` evaluated on the grid of ``size`` (linspace(-1, 1)
    per axis), flattened, so that a batch's log field is one matrix product."""
    polys = [legendre(torch.linspace(-1, 1, s, device=dev), degree) for s in size]
    rows = []
    for term in bias_terms(len(size), degree):
        row = polys[0][term[0]]
        for axis in range(1, len(size)):
            row = torch.outer(row, polys[axis][term[axis]]).flatten()
        rows.append(row)
    return torch.stack(rows)


def blur_matrices(sigma: torch.Tensor, edges: list[torch.Tensor]) -> list[torch.Tensor]:
    """(B, nd) per-sample, per-axis sigmas -> per axis (B, L, L) blur matrices: entry (i, j) is
    the mass over pixel j of the Gaussian centred on pixel i (MONAI's ``GaussianFilter`` with
    ``approx="erf"``, zero padding: the mass that falls outside the image is lost). edges: per
    axis (L, L + 1), entry (i, m) = m - i - 1/2, or one shared by all axes of equal size.

    A matrix, not a kernel: a blur along an axis is then a batched matrix product, each sample
    with its own sigma, where a grouped convolution with one group per sample took 1.4 ms of
    2.2 per call at 256 x 224^2 on an H200. A sigma of 0 gives the identity. MONAI truncates its
    kernels at 4 sigma; past that these hold terms below 1e-4.
    """
    if len(edges) == 1:
        cdf = torch.special.ndtr(edges[0] / sigma.view(*sigma.shape, 1, 1))
        return list(cdf.diff(dim=-1).unbind(1))
    return [
        torch.special.ndtr(e / sigma[:, axis].view(-1, 1, 1)).diff(dim=-1)
        for axis, e in enumerate(edges)
    ]


_BLUR = {2: "nij,ncjl,nkl->ncik", 3: "nad,ncdhw,nbh,new->ncabe"}


def blur_kernels(sigma: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """(B, nd) sigmas -> (B, nd, K) 1D kernels, the rows of :func:`blur_matrices` cut to the
    K = 2R + 1 pixels around the centre (R: 4 sigma of the largest sigma allowed). edges:
    (K + 1,) -R - 1/2 .. R + 1/2."""
    return torch.special.ndtr(edges / sigma.unsqueeze(-1)).diff(dim=-1)


def convolve_blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """x (B, C, *size) convolved with zero padding along each axis with that sample's kernel
    from ``kernels`` (B, nd, K), as grouped convolutions over the batch. On a CPU in 2D this
    is about 3x faster than :func:`separable_blur` (K taps per pixel instead of L); on a GPU a
    grouped convolution with one group per sample is the slow one."""
    b, c, *size = x.shape
    nd, k = kernels.shape[1:]
    if c > 1:
        kernels = kernels.repeat_interleave(c, 0)
    conv = F.conv2d if nd == 2 else F.conv3d
    out = x.reshape(1, b * c, *size)
    for axis, kernel in enumerate(kernels.unbind(1)):
        shape = [b * c, 1] + [1] * nd
        shape[2 + axis] = k
        pad = [0] * nd
        pad[axis] = k // 2
        out = conv(out, kernel.reshape(shape), padding=tuple(pad), groups=b * c)
    return out.view_as(x)


def separable_blur(x: torch.Tensor, matrices: list[torch.Tensor]) -> torch.Tensor:
    """x (B, C, *size) blurred along every axis with that sample's matrices from
    :func:`blur_matrices`: one einsum (a batched matrix product per axis)."""
    return torch.einsum(_BLUR[x.dim() - 2], matrices[0], x, *matrices[1:])


def box_constants(size: tuple[int, ...], dev: torch.device, shift: float = 0.0) -> tuple:
    """The constants of :func:`box_union` for images of ``size``: the pixel centres 0.5, 1.5, ...
    (plus ``shift``) along the longest axis and a (1,) tensor of ones."""
    centres = torch.arange(max(size), device=dev, dtype=torch.float32) + (0.5 + shift)
    return centres, torch.ones(1, device=dev)


def box_union(
    start: torch.Tensor, end: torch.Tensor, size: tuple[int, ...], constants: tuple
) -> torch.Tensor:
    """(B, H * nd) box corners in pixels, hole-major, [start, end) along each axis, tested at
    the pixel centres -> (B, 1, *size) bool: inside any of the H boxes. An empty box
    (end <= start) adds nothing. constants: :func:`box_constants`, the centres (max(size),)
    0.5, 1.5, ... (or 1, 2, ... for corners shifted by half a pixel) and a (1,) tensor of ones
    (the channel axis of the result).

    Each box's depth along an axis, min(centre - start, end - centre) clamped to [0, 1/2], is
    positive exactly inside it; the product over axes summed over boxes (one einsum) is the
    number of boxes weighted by depth, positive exactly inside any of them.
    """
    centres, ones = constants
    b, nd = start.shape[0], len(size)
    depth = torch.minimum(centres - start.unsqueeze(-1), end.unsqueeze(-1) - centres)
    axes = depth.clamp(0.0, 0.5).view(b, -1, nd, len(centres)).unbind(2)
    axes = [a if s == len(centres) else a[..., :s] for a, s in zip(axes, size, strict=True)]
    letters = "xyz"[:nd]
    spec = ",".join(f"nh{a}" for a in letters) + f",c->nc{letters}"
    return torch.einsum(spec, *axes, ones) > 0
