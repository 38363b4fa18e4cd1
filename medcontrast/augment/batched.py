"""Path (b): batched augmentation on the training device with per-sample random parameters.

MONAI's random transforms draw one set of parameters per call and work on one sample, so a batch
would either fail or share one draw. Here every parameter is drawn per sample as a tensor, and
the whole batch is transformed at once: all spatial steps are folded into one affine matrix per
sample and resampled in one pass with MONAI's ``AffineTransform`` layer; the intensity steps are
our own tensor code. The distributions are those of :mod:`medcontrast.augment.monai_views`
(see :mod:`medcontrast.augment.params`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.networks.layers import AffineTransform

from medcontrast.augment.params import AugmentParams
from medcontrast.errors import MedContrastError


class BatchedViews:
    """Callable: (B, C, *size) -> one augmented view per sample, drawn with ``generator``."""

    def __init__(self, params: AugmentParams) -> None:
        self.p = params
        a, b = params.views.rot90_axes
        if params.views.rot90_prob > 0 and params.size[a] != params.size[b]:
            raise MedContrastError("views.rot90_prob needs equal sizes along views.rot90_axes")
        self.resample = AffineTransform(
            normalized=True,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
            reverse_indexing=True,
        )

    # -- random helpers ------------------------------------------------------------------------
    @staticmethod
    def _u(g: torch.Generator, shape: tuple[int, ...], lo: float, hi: float, dev) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=g, device=dev)

    @staticmethod
    def _coin(g: torch.Generator, n: int, p: float, dev) -> torch.Tensor:
        return torch.rand(n, generator=g, device=dev) < p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: (B, C, *size) float tensor on the generator's device -> (B, C, *size)."""
        x = self.spatial(x, generator)
        return self.intensity(x, generator)

    # -- spatial ---------------------------------------------------------------------------------
    def spatial_matrices(self, n: int, g: torch.Generator, dev) -> torch.Tensor:
        """(n, nd+1, nd+1) matrices mapping output to input in normalised array coordinates."""
        p, nd = self.p, self.p.ndim
        eye = torch.eye(nd + 1, device=dev).expand(n, nd + 1, nd + 1)
        theta = eye.clone()
        if p.views.crop_prob > 0:
            do = self._coin(g, n, p.views.crop_prob, dev)[:, None]
            side = torch.where(
                do, self._u(g, (n, nd), *p.views.crop_scale, dev), torch.ones(n, nd, device=dev)
            )
            centre = self._u(g, (n, nd), -1.0, 1.0, dev) * (1 - side)
            crop = eye.clone()
            crop[:, :nd, :nd] = torch.diag_embed(side)
            crop[:, :nd, nd] = centre
            theta = theta @ crop
        if p.views.flip_prob > 0:
            signs = torch.ones(n, nd, device=dev)
            for axis in p.views.flip_axes:
                signs[:, axis] = torch.where(self._coin(g, n, p.views.flip_prob, dev), -1.0, 1.0)
            flip = eye.clone()
            flip[:, :nd, :nd] = torch.diag_embed(signs)
            theta = theta @ flip
        if p.views.rot90_prob > 0:
            do = self._coin(g, n, p.views.rot90_prob, dev)
            k = torch.randint(0, 4, (n,), generator=g, device=dev) * do
            angle = k.float() * (math.pi / 2)
            a, b = p.views.rot90_axes
            rot = eye.clone()
            rot[:, a, a] = torch.cos(angle).round()
            rot[:, a, b] = -torch.sin(angle).round()
            rot[:, b, a] = torch.sin(angle).round()
            rot[:, b, b] = torch.cos(angle).round()
            theta = theta @ rot
        if p.views.affine_prob > 0:
            do = self._coin(g, n, p.views.affine_prob, dev)
            half = torch.tensor([s / 2 for s in p.size], device=dev)
            rot = self._rotation(n, g, dev)
            # Rotate in pixel units so that non-square images are not sheared.
            rot = rot * half[None, None, :] / half[None, :, None]
            zoom = 1 + self._u(g, (n, nd), -p.views.scale, p.views.scale, dev)
            shift = self._u(g, (n, nd), -p.views.translate, p.views.translate, dev) * 2
            aff = eye.clone()
            aff[:, :nd, :nd] = rot * zoom[:, None, :]
            aff[:, :nd, nd] = shift
            theta = theta @ torch.where(do[:, None, None], aff, eye)
        return theta

    def _rotation(self, n: int, g: torch.Generator, dev) -> torch.Tensor:
        r = self.p.rotate_rad
        if self.p.ndim == 2:
            a = self._u(g, (n,), -r, r, dev)
            c, s = torch.cos(a), torch.sin(a)
            return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        out = torch.eye(3, device=dev).expand(n, 3, 3)
        for i, j in ((1, 2), (0, 2), (0, 1)):
            a = self._u(g, (n,), -r, r, dev)
            m = torch.eye(3, device=dev).repeat(n, 1, 1)
            m[:, i, i], m[:, i, j], m[:, j, i], m[:, j, j] = (
                torch.cos(a),
                -torch.sin(a),
                torch.sin(a),
                torch.cos(a),
            )
            out = out @ m
        return out

    def spatial(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        p, nd, n, dev = self.p, self.p.ndim, x.shape[0], x.device
        theta = self.spatial_matrices(n, g, dev)
        identity = torch.eye(nd + 1, device=dev)
        if not torch.equal(theta, identity.expand_as(theta)):
            x = self.resample(x, theta[:, :nd, :].to(x.dtype), spatial_size=p.size)
        if p.views.elastic_prob > 0:
            x = self._elastic(x, g)
        return x

    def _elastic(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        p, nd, n, dev = self.p, self.p.ndim, x.shape[0], x.device
        do = self._coin(g, n, p.views.elastic_prob, dev)
        m = 2 * p.views.elastic_magnitude
        coarse = self._u(g, (n, nd, *p.elastic_grid), -m, m, dev)
        field = F.interpolate(
            coarse, size=p.size, mode="bicubic" if nd == 2 else "trilinear", align_corners=False
        )
        # Like MONAI's SmoothField: rescale the upsampled field to the coarse field's range.
        flat_c, flat_f = coarse.flatten(1), field.flatten(1)
        cmin, cmax = flat_c.min(1).values, flat_c.max(1).values
        fmin, fmax = flat_f.min(1).values, flat_f.max(1).values
        view = (n,) + (1,) * (nd + 1)
        field = (field - fmin.view(view)) / (fmax - fmin).clamp_min(1e-12).view(view)
        field = field * (cmax - cmin).view(view) + cmin.view(view)
        field = field * do.view(view)
        axes = [torch.linspace(-1 + 1 / s, 1 - 1 / s, s, device=dev) for s in p.size]
        ident = torch.stack(torch.meshgrid(*axes, indexing="ij"), 0)  # (nd, *size), array order
        grid = (ident[None] + field).movedim(1, -1).flip(-1)  # grid_sample wants (x, y[, z])
        return F.grid_sample(
            x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
        )

    # -- intensity -------------------------------------------------------------------------------
    @staticmethod
    def _where(x: torch.Tensor, do: torch.Tensor, fn) -> torch.Tensor:
        """Apply ``fn(sub, idx)`` to the samples drawn for an operation only (it costs nothing for
        the others); parameters are drawn for every sample beforehand, so the random stream does
        not depend on which samples were picked."""
        idx = do.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x
        if idx.numel() == x.shape[0]:
            return fn(x, idx)
        out = x.clone()
        out[idx] = fn(x[idx], idx).to(x.dtype)
        return out

    def intensity(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        p, n, dev, nd = self.p, x.shape[0], x.device, self.p.ndim
        view = (-1,) + (1,) * (x.dim() - 1)
        if p.views.contrast_prob > 0:
            do = self._coin(g, n, p.views.contrast_prob, dev)
            gamma = self._u(g, (n,), *p.views.gamma, dev)

            def contrast(sub: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
                mn, mx = _minmax(sub)
                rng = mx - mn
                return ((sub - mn) / (rng + 1e-7)).clamp_min(0) ** gamma[idx].view(view) * rng + mn

            x = self._where(x, do, contrast)
        if p.views.hist_shift_prob > 0:
            x = self._hist_shift(x, g)
        if p.views.scale_intensity_prob > 0:
            do = self._coin(g, n, p.views.scale_intensity_prob, dev)
            f = 1 + self._u(g, (n,), -p.views.scale_intensity, p.views.scale_intensity, dev)
            x = self._where(x, do, lambda sub, idx: sub * f[idx].view(view))
        if p.views.shift_intensity_prob > 0:
            do = self._coin(g, n, p.views.shift_intensity_prob, dev)
            o = self._u(g, (n,), -p.views.shift_intensity, p.views.shift_intensity, dev)
            x = self._where(x, do, lambda sub, idx: sub + o[idx].view(view))
        if p.views.bias_field_prob > 0:
            do = self._coin(g, n, p.views.bias_field_prob, dev)
            coeff = self._bias_coefficients(n, g, dev)
            x = self._where(
                x, do, lambda sub, idx: sub * torch.exp(self._bias_field(coeff[idx])).to(sub.dtype)
            )
        if p.views.noise_prob > 0:
            do = self._coin(g, n, p.views.noise_prob, dev)
            std = self._u(g, (n,), 0.0, p.views.noise_std, dev)
            x = self._where(
                x,
                do,
                lambda sub, idx: (
                    sub
                    + torch.randn(sub.shape, generator=g, device=dev, dtype=sub.dtype)
                    * std[idx].view(view).to(sub.dtype)
                ),
            )
        if p.views.blur_prob > 0:
            do = self._coin(g, n, p.views.blur_prob, dev)
            sigma = self._u(g, (n, nd), *p.views.blur_sigma, dev)
            x = self._where(x, do, lambda sub, idx: _gaussian_blur(sub, sigma[idx]))
        if p.views.sharpen_prob > 0:
            do = self._coin(g, n, p.views.sharpen_prob, dev)
            s1 = self._u(g, (n,), 0.5, 1.0, dev)
            s2 = 0.5 + (s1 - 0.5) * torch.rand(n, generator=g, device=dev)
            alpha = self._u(g, (n,), 10.0, 30.0, dev)

            def sharpen(sub: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
                b1 = _gaussian_blur(sub, s1[idx][:, None].expand(len(idx), nd))
                b2 = _gaussian_blur(b1, s2[idx][:, None].expand(len(idx), nd))
                return b1 + alpha[idx].view(view) * (b1 - b2)

            x = self._where(x, do, sharpen)
        if p.views.dropout_prob > 0:
            x = self._dropout(x, g)
        return x

    def _hist_shift(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        p, n, dev = self.p, x.shape[0], x.device
        lo, hi = p.views.hist_points
        npts = torch.randint(lo, hi + 1, (n,), generator=g, device=dev)
        ref = torch.arange(hi, device=dev)[None].float() / (npts[:, None] - 1).float()  # (n, hi)
        ref = torch.minimum(ref, torch.ones_like(ref))
        flo = ref.clone()
        for i in range(1, hi - 1):
            inside = i < npts - 1
            draw = flo[:, i - 1] + (flo[:, i + 1] - flo[:, i - 1]) * torch.rand(
                n, generator=g, device=dev
            )
            flo[:, i] = torch.where(inside, draw, flo[:, i])
        do = self._coin(g, n, p.views.hist_shift_prob, dev)

        def shift(sub: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            pts, fl = npts[idx][:, None], flo[idx]
            mn, mx = _minmax(sub)
            v = ((sub - mn) / (mx - mn).clamp_min(1e-12)).flatten(1).clamp(0, 1)  # (k, V)
            seg = (v * (pts - 1)).floor().clamp(max=(pts - 2).float()).long()
            t = v * (pts - 1) - seg
            f0, f1 = fl.gather(1, seg), fl.gather(1, seg + 1)
            return (f0 + t * (f1 - f0)).view_as(sub) * (mx - mn) + mn

        return self._where(x, do, shift)

    def _bias_coefficients(self, n: int, g: torch.Generator, dev) -> torch.Tensor:
        """Legendre coefficients U(0, c) on the terms MONAI's RandBiasField uses: np.tril_indices
        in 2D, i + j + k <= degree in 3D."""
        deg, nd = 3, self.p.ndim
        idx = torch.arange(deg + 1, device=dev)
        if nd == 2:
            mask = idx[:, None] >= idx[None, :]
        else:
            mask = (idx[:, None, None] + idx[None, :, None] + idx[None, None, :]) <= deg
        return self._u(g, (n,) + (deg + 1,) * nd, 0.0, self.p.views.bias_field_coeff, dev) * mask

    def _bias_field(self, coeff: torch.Tensor) -> torch.Tensor:
        """(k, 1, *size) log bias field from coefficients (k, 4, 4[, 4])."""
        basis = [_legendre(torch.linspace(-1, 1, s, device=coeff.device), 3) for s in self.p.size]
        if self.p.ndim == 2:
            field = torch.einsum("bij,ix,jy->bxy", coeff, basis[0], basis[1])
        else:
            field = torch.einsum("bijk,ix,jy,kz->bxyz", coeff, basis[0], basis[1], basis[2])
        return field[:, None]

    def _dropout(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        p, n, nd, dev = self.p, x.shape[0], self.p.ndim, x.device
        do = self._coin(g, n, p.views.dropout_prob, dev)
        keep = torch.ones((n, *p.size), dtype=torch.bool, device=dev)
        for _ in range(p.views.dropout_holes):
            hole = torch.ones_like(keep)
            for axis, s in enumerate(p.size):
                lo = max(1, math.ceil(p.views.dropout_size[0] * s))
                hi = max(1, math.ceil(p.views.dropout_size[1] * s))
                length = torch.randint(lo, hi + 1, (n,), generator=g, device=dev)
                start = (torch.rand(n, generator=g, device=dev) * (s - length + 1)).floor().long()
                pos = torch.arange(s, device=dev)[None]
                inside = (pos >= start[:, None]) & (pos < (start + length)[:, None])  # (n, s)
                shape = [n] + [1] * nd
                shape[axis + 1] = s
                hole = hole & inside.view(shape)
            keep = keep & ~(hole & do.view((n,) + (1,) * nd))
        return x * keep[:, None].to(x.dtype)


def _minmax(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mn, mx = torch.aminmax(x.flatten(1), dim=1)
    view = (x.shape[0],) + (1,) * (x.dim() - 1)
    return mn.view(view), mx.view(view)


def _legendre(t: torch.Tensor, degree: int) -> torch.Tensor:
    polys = [torch.ones_like(t), t]
    for k in range(1, degree):
        polys.append(((2 * k + 1) * t * polys[k] - k * polys[k - 1]) / (k + 1))
    return torch.stack(polys[: degree + 1])


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample, per-axis sigma (n, nd); zero padding, 4-sigma
    kernels, as MONAI's GaussianFilter."""
    n, c = x.shape[:2]
    nd = x.dim() - 2
    radius = math.ceil(4.0 * float(sigma.max())) if sigma.numel() else 0
    if radius == 0:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    out = x.reshape(1, n * c, *x.shape[2:])
    for axis in range(nd):
        s = sigma[:, axis].to(x.dtype).clamp_min(1e-3)
        k = torch.exp(-0.5 * (offsets[None] / s[:, None]) ** 2)
        k = k * (offsets[None].abs() <= (4.0 * s[:, None] + 0.5).floor())
        k = k / k.sum(1, keepdim=True)
        k = k.repeat_interleave(c, 0)  # (n*c, K)
        shape = [n * c, 1] + [1] * nd
        shape[2 + axis] = 2 * radius + 1
        pad = [0] * nd
        pad[axis] = radius
        conv = F.conv2d if nd == 2 else F.conv3d
        out = conv(out, k.view(shape), padding=tuple(pad), groups=n * c)
    return out.view_as(x)
