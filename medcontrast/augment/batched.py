"""Path (b): batched augmentation on the training device, per-sample random parameters, a fixed
small number of kernels per call.

MONAI's random transforms draw one set of parameters per call and work on one sample, so a batch
would either fail or share one draw. Here (1) every parameter of every sample comes from one
``torch.rand`` call (:mod:`medcontrast.augment.draws`), a skipped step being a step with neutral
parameters; (2) all spatial steps are folded into one affine matrix per sample, the elastic
displacement added to its grid, and the batch is resampled once
(:mod:`medcontrast.augment.geometry`); (3) the intensity steps are a handful of whole-batch
operations (:mod:`medcontrast.augment.intensity`). One call costs about 80 to 100 operator
launches whatever the batch, instead of one per step and sample; on CUDA the pure part can also
be compiled into fused kernels (``views.compile``). On a CPU, where pixels cost more than
launches, the curves, noise and blur run on the samples that drew them only (``sparse``). The
distributions are those of :mod:`medcontrast.augment.monai_views` (see
:mod:`medcontrast.augment.params`).
"""

from __future__ import annotations

import math
import sys
from typing import Literal

import torch

from medcontrast.augment import geometry as geo
from medcontrast.augment import intensity as ops
from medcontrast.augment.draws import DrawPlan
from medcontrast.augment.params import AugmentParams
from medcontrast.errors import MedContrastError

_BASIS_LIMIT = 2**23  # bias basis entries (32 MiB in float32) above which 3D uses an einsum


class BatchedViews:
    """Callable: (B, C, *size) -> one augmented view per sample, drawn with ``generator``.

    ``compile``: "auto" compiles the pure part (everything after the random draw) with
    ``torch.compile`` on CUDA, "on" on any device, "graphs" also captures it in a CUDA graph on
    CUDA (``mode="reduce-overhead"``: one launch instead of one per fused kernel), "off" never;
    a compilation that fails falls back to the plain path with a message on stderr.
    :attr:`mode` says which path ran.
    ``sparse``: the steps with a per-pixel cost run on the samples they picked only (fewer
    pixels, a few more operators; see :meth:`_rows`); ``None``: on a CPU, when not compiled.
    """

    def __init__(
        self,
        params: AugmentParams,
        compile: Literal["auto", "on", "off", "graphs"] = "auto",
        sparse: bool | None = None,
    ) -> None:
        self.p = params
        v, nd = params.views, params.ndim
        a, b = v.rot90_axes
        if v.rot90_prob > 0 and params.size[a] != params.size[b]:
            raise MedContrastError("views.rot90_prob needs equal sizes along views.rot90_axes")
        self.plan = _plan(params)
        self.spatial_on = any(
            getattr(v, k) > 0 for k in ("crop_prob", "flip_prob", "rot90_prob", "affine_prob")
        )
        self.dense_bias = len(ops.bias_terms(nd)) * math.prod(params.size) <= _BASIS_LIMIT
        self.compile = compile
        self.sparse = sparse
        self.mode = "plain"
        self._compiled = None
        self._constants: dict[torch.device, dict[str, torch.Tensor]] = {}

    # -- the call --------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: (B, C, *size) float tensor on the generator's device -> (B, C, *size)."""
        if self._use_compiled(x.device):
            u, noise = self.draw(x, generator)
            try:
                out = self._compiled(x, u, noise)
                # a CUDA graph writes every replay into the same buffer: a second call would
                # overwrite the first call's views
                return out.clone() if self.mode.endswith("graphs") else out
            except Exception as err:  # inductor or a missing compiler: the plain path still works
                self.compile, self.mode = "off", f"plain (torch.compile failed: {err!s:.200})"
                print(f"views: {self.mode}", file=sys.stderr)
                return self.apply(x, u, noise)
        sparse = x.device.type == "cpu" if self.sparse is None else self.sparse
        if sparse:  # noise is drawn for the samples that take it, in intensity()
            return self.apply(x, self.plan.draw(x.shape[0], generator, x.device), None, generator)
        return self.apply(x, *self.draw(x, generator))

    def pair(
        self, x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views (of ``x1`` and ``x2``, the same images or two crops of them), from one call
        on the two stacked: independent draws for every sample and view, half the operator
        launches of two calls (on a GPU at 64^2 a SimCLR step is bound by launches)."""
        both = self(torch.cat([x1, x2]), generator)
        return both[: x1.shape[0]], both[x1.shape[0] :]

    def _use_compiled(self, dev: torch.device) -> bool:
        if self.compile == "off" or (self.compile == "auto" and dev.type != "cuda"):
            return False
        if self._compiled is None:
            self.constants(dev)  # made outside the compiled code: no side effects in it
            self.plan.constants(dev)
            graphs = self.compile == "graphs" and dev.type == "cuda"
            mode = "reduce-overhead" if graphs else None
            self._compiled = torch.compile(self.apply, dynamic=False, mode=mode)
            self.mode = "compiled, CUDA graphs" if graphs else "compiled"
        return True

    def draw(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's randomness: (B, K) uniforms for every parameter and, when noise is on,
        (B, C, *size) standard normal noise. Everything after this is deterministic."""
        u = self.plan.draw(x.shape[0], g, x.device)
        if self.p.views.noise_prob <= 0:
            return u, None
        return u, torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)

    def apply(
        self,
        x: torch.Tensor,
        u: torch.Tensor,
        noise: torch.Tensor | None,
        sparse: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The views of ``x`` for the draws ``u`` and ``noise`` of :meth:`draw`. ``sparse``: the
        generator of the call, given instead of ``noise``: the steps with per-pixel cost run on
        the samples they picked only, noise drawn for those (:meth:`_rows`)."""
        b = self.plan.parameters(u)
        c = self.constants(x.device)
        if self.spatial_on or self.p.views.elastic_prob > 0:
            x = self.spatial(x, b, c)
        return self.intensity(x, b, c, noise, sparse)

    # -- spatial ---------------------------------------------------------------------------------
    def matrices(
        self, b: dict[str, torch.Tensor], c: dict[str, torch.Tensor], crop: bool = True
    ) -> torch.Tensor:
        """(B, nd, nd+1) output-to-input maps in normalised (x, y[, z]) coordinates composing,
        in order, crop -> flips -> rot90 -> affine (rotation, zoom, shift): the linear part in one
        einsum, the translation in one or two operations. ``crop=False``: without the crop (the
        caller applies it to the grid)."""
        v = self.p.views
        crop = crop and v.crop_prob > 0
        diag = b["crop.side"] if crop else None
        if v.flip_prob > 0:
            diag = b["flip.sign"] if diag is None else diag * b["flip.sign"]
        quarter = None
        if v.rot90_prob > 0:
            (quarter,) = geo.rotations(b["rot90.k"] * (math.pi / 2), c["rot90"], exact=True)
        operands, terms = ([diag], ["ni"]) if diag is not None else ([], [])
        col, letters = "i", iter("jklmpq")
        if quarter is not None:
            col = next(letters)
            operands.append(quarter)
            terms.append(f"ni{col}")
        if v.affine_prob > 0:
            row = col  # the affine's rotation starts where the quarter turn ends
            for m in geo.rotations(b["affine.angle"], c["planes"]):
                nxt = next(letters)
                operands.append(m)
                terms.append(f"n{col}{nxt}")
                col = nxt
            if "aspect" in c:  # rotate in pixel units: non-square images are not sheared
                operands.append(c["aspect"])
                terms.append(f"{row}{col}")
            operands.append(b["affine.zoom"])
            terms.append(f"n{col}")
        if quarter is not None or v.affine_prob > 0:
            lin = torch.einsum(",".join(terms) + f"->ni{col}", *operands)
        elif diag is not None:
            lin = torch.diag_embed(diag)
        else:
            lin = c["eye"].expand(next(iter(b.values())).shape[0], -1, -1)
        return self._with_shift(lin, diag, quarter, b, crop)

    def _with_shift(
        self,
        lin: torch.Tensor,
        diag: torch.Tensor | None,
        quarter: torch.Tensor | None,
        b: dict[str, torch.Tensor],
        crop: bool,
    ) -> torch.Tensor:
        """The translation: diag * (quarter @ affine shift) + the crop's centre."""
        v, shift = self.p.views, None
        if v.affine_prob > 0:
            shift = b["affine.shift"]
            if quarter is not None:
                shift = torch.einsum("nij,nj->ni", quarter, shift)
        if crop:
            centre = self._crop_centre(b)
            shift = centre if shift is None else torch.addcmul(centre, diag, shift)
        elif shift is not None and diag is not None:
            shift = diag * shift
        if shift is None:
            return torch.nn.functional.pad(lin, (0, 1))
        return torch.cat([lin, shift.unsqueeze(2)], 2)

    @staticmethod
    def _crop_centre(b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The crop window's centre, inside the image: U(-1, 1) * (1 - side)."""
        return torch.addcmul(b["crop.centre"], b["crop.centre"], b["crop.side"], value=-1)

    def spatial(
        self, x: torch.Tensor, b: dict[str, torch.Tensor], c: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """All spatial steps in one resampling of the batch.

        MONAI crops and resizes first, so what a later rotation, shift or deformation brings in
        from outside the crop window is zero; one resampling of the whole image would bring in
        the image around the window instead (brighter views, measurably so in the whole-preset
        test). When both are on, the grid is made without the crop, its points outside
        [-1, 1] sent out of the image, and the crop applied to the grid."""
        p, v = self.p, self.p.views
        field = None
        if v.elastic_prob > 0:
            coarse = b["elastic.coarse"].view(x.shape[0], p.ndim, *p.elastic_grid)
            field = geo.elastic_field(coarse, b["elastic.on"], p.size)
        window = None
        if v.crop_prob > 0 and (v.affine_prob > 0 or v.elastic_prob > 0):
            window = (b["crop.side"], self._crop_centre(b))
        theta = self.matrices(b, c, crop=window is None)
        half = x.device.type == "cuda" and x.dtype == torch.float32
        return geo.resample(x, theta, field, window, half=half, coords=c["coords"])

    # -- intensity -------------------------------------------------------------------------------
    def intensity(
        self,
        x: torch.Tensor,
        b: dict[str, torch.Tensor],
        c: dict[str, torch.Tensor],
        noise: torch.Tensor | None,
        sparse: torch.Generator | None = None,
    ) -> torch.Tensor:
        """gamma -> histogram shift -> scale, shift -> bias field -> noise (pointwise, on the
        flattened batch) -> blur -> sharpen -> dropout."""
        v, shape = self.p.views, x.shape
        xf = self._curves(x.reshape(shape[0], -1), b, c, sparse is not None)
        if v.scale_intensity_prob > 0 and v.shift_intensity_prob > 0:
            xf = torch.addcmul(b["shift.offset"], xf, b["scale.factor"])
        elif v.scale_intensity_prob > 0:
            xf = xf * b["scale.factor"]
        elif v.shift_intensity_prob > 0:
            xf = xf + b["shift.offset"]
        if v.bias_field_prob > 0:
            xf = xf * torch.exp(self._bias_field(b["bias.coeff"], c, shape[1]))
        speckle = v.noise_kind == "speckle"  # x (1 + n) instead of x + n
        if noise is not None:
            n = noise.reshape(shape[0], -1)
            xf = torch.addcmul(xf, n * xf if speckle else n, b["noise.std"])
        elif v.noise_prob > 0 and sparse is not None:
            rows = self._rows(b["noise.on"])
            std = b["noise.std"][rows].expand(-1, xf.shape[1])
            n = torch.normal(0.0, std, generator=sparse)
            xf = xf.index_add(0, rows, n * xf[rows] if speckle else n)
        x = xf.view(shape)
        if v.blur_prob > 0 and sparse is not None and not self._convolves(x):
            rows = self._rows(b["blur.on"])
            x = x.index_copy(0, rows, self._blur(x[rows], b["blur.sigma"][rows], c))
        elif v.blur_prob > 0:
            x = self._blur(x, b["blur.sigma"], c)
        if v.sharpen_prob > 0:
            x = self._sharpen(x, b, c)
        if v.dropout_prob > 0:
            # A start uniform on [0, room - length) tested at pixel centres shifted by +1/2
            # covers the same pixels as its floor tested at the centres: no rounding needed.
            length = b["dropout.length"]
            start = b["dropout.start"] * (c["dropout_room"] - length)
            holes = ops.box_union(start, start + length, self.p.size, c["boxes"])
            x = x.masked_fill(holes, 0.0)
        return x

    def _curves(
        self,
        xf: torch.Tensor,
        b: dict[str, torch.Tensor],
        c: dict[str, torch.Tensor],
        sparse: bool = False,
    ) -> torch.Tensor:
        """Gamma contrast and histogram shift, both on the image rescaled to [0, 1] by its own
        range (the gamma curve keeps that range, so one rescaling serves both). A sample that
        skips one gets gamma 1 or the identity curve; one that skips both keeps its pixels."""
        v = self.p.views
        if v.contrast_prob <= 0 and v.hist_shift_prob <= 0:
            return xf
        if v.contrast_prob > 0 and v.hist_shift_prob > 0:
            changed = torch.maximum(b["contrast.on"], b["hist.on"])
        else:
            changed = b["contrast.on"] if v.contrast_prob > 0 else b["hist.on"]
        gamma = b["contrast.gamma"] if v.contrast_prob > 0 else None
        curve = last = None
        if v.hist_shift_prob > 0:
            last = b["hist.last"]
            curve = ops.hist_curves(b["hist.keep"], last, c["hist_index"])
        if not sparse:
            # the identity is exact only up to rounding: samples that skip both keep their pixels
            return torch.lerp(xf, self._curve(xf, gamma, curve, last), changed)
        rows = self._rows(changed)
        pick = [t[rows] if t is not None else None for t in (gamma, curve, last)]
        return xf.index_copy(0, rows, self._curve(xf[rows], *pick))

    @staticmethod
    def _curve(
        xf: torch.Tensor,
        gamma: torch.Tensor | None,
        curve: torch.Tensor | None,
        last: torch.Tensor | None,
    ) -> torch.Tensor:
        """(n, M) images through gamma (n, 1) and the curves (n, P + 1) of
        :func:`ops.hist_curves`, each optional, on their own [0, 1] range."""
        low, high = torch.aminmax(xf, dim=1, keepdim=True)
        span = high - low
        unit = (xf - low) / (span + 1e-7)  # x - min(x) >= 0 exactly: no clamp needed
        if gamma is not None:
            unit = unit.pow(gamma)
        if curve is not None:
            unit = ops.piecewise(unit, curve, last)
        return torch.addcmul(low, unit, span)

    @staticmethod
    def _rows(on: torch.Tensor) -> torch.Tensor:
        """(B, 1) coin -> the indices of the samples where it is 1. On a CPU the steps with a
        per-pixel cost (curves, noise, blur by matrices) run on those samples only: the cost is
        the pixels, not the number of operators as on a GPU, where every sample goes through
        every step."""
        return torch.nonzero(on, as_tuple=True)[0]

    @staticmethod
    def _convolves(x: torch.Tensor) -> bool:
        """Whether the blur is a convolution (2D on a CPU: K taps a pixel, cheap for all samples)
        or matrices (L taps a pixel: worth running on the blurred samples only)."""
        return x.device.type == "cpu" and x.dim() == 4

    def _bias_field(
        self, coeff: torch.Tensor, c: dict[str, torch.Tensor], channels: int
    ) -> torch.Tensor:
        """(B, T) Legendre coefficients -> (B, C * V) log bias field (MONAI's RandBiasField)."""
        if self.dense_bias:
            field = coeff @ c["bias_basis"]
        else:
            full = (coeff @ c["bias_scatter"]).view(-1, 4, 4, 4)
            x, y, z = c["legendre"]
            field = torch.einsum("nijk,ix,jy,kz->nxyz", full, x, y, z).flatten(1)
        return field.repeat(1, channels) if channels > 1 else field

    @staticmethod
    def _blur(x: torch.Tensor, sigma: torch.Tensor, c: dict) -> torch.Tensor:
        """Per-sample Gaussian blur: grouped convolutions on a CPU in 2D, blur matrices
        elsewhere (whichever measured faster there; see intensity.convolve_blur)."""
        if BatchedViews._convolves(x):
            return ops.convolve_blur(x, ops.blur_kernels(sigma, c["blur_taps"]))
        return ops.separable_blur(x, ops.blur_matrices(sigma, c["blur_edges"]))

    def _sharpen(
        self, x: torch.Tensor, b: dict[str, torch.Tensor], c: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """MONAI's RandGaussianSharpen: blur sigma1 ~ U(0.5, 1), sigma2 ~ U(0.5, sigma1),
        alpha ~ U(10, 30); a sample that skips it gets sigmas 0 and alpha 0 (the identity)."""
        nd = self.p.ndim
        s1 = b["sharpen.s1"]
        s2 = (0.5 + (s1 - 0.5) * b["sharpen.u"]) * b["sharpen.on"]
        first = self._blur(x, s1.expand(-1, nd), c)
        second = self._blur(first, s2.expand(-1, nd), c)
        alpha = b["sharpen.alpha"].view(-1, *(1,) * (x.dim() - 1))
        return first + alpha * (first - second)

    # -- constants -------------------------------------------------------------------------------
    def constants(self, dev: torch.device) -> dict[str, torch.Tensor]:
        """Tensors every call uses, made once per device."""
        if dev not in self._constants:
            self._constants[dev] = _constants(self.p, dev, self.dense_bias)
        return self._constants[dev]


def _plan(p: AugmentParams) -> DrawPlan:
    """The columns of one call's draw, in the order of the pipeline (see
    :mod:`medcontrast.augment.params` for the distributions)."""
    v, nd, plan = p.views, p.ndim, DrawPlan()
    if v.crop_prob > 0:
        on = plan.coin("crop.on", [v.crop_prob])
        plan.uniform("crop.side", [v.crop_scale[0]] * nd, [v.crop_scale[1]] * nd, on, 1.0)
        plan.uniform("crop.centre", [-1.0] * nd, [1.0] * nd)
    if v.flip_prob > 0:  # columns in (x, y[, z]) order: the last array axis first
        flips = [v.flip_prob if a in v.flip_axes else 0.0 for a in reversed(range(nd))]
        on = plan.coin("flip.on", flips)
        plan.uniform("flip.sign", [-1.0] * nd, [-1.0] * nd, on, 1.0)
    if v.rot90_prob > 0:
        on = plan.coin("rot90.on", [v.rot90_prob])
        plan.uniform("rot90.k", [0], [4], on, 0.0, integer=True)
    if v.affine_prob > 0:
        on, r, planes = plan.coin("affine.on", [v.affine_prob]), p.rotate_rad, len(geo.PLANES[nd])
        plan.uniform("affine.angle", [-r] * planes, [r] * planes, on)
        plan.uniform("affine.zoom", [1 - v.scale] * nd, [1 + v.scale] * nd, on, 1.0)
        plan.uniform("affine.shift", [-2 * v.translate] * nd, [2 * v.translate] * nd, on)
    if v.elastic_prob > 0:
        plan.coin("elastic.on", [v.elastic_prob])
        cells = nd * math.prod(p.elastic_grid)
        m = 2 * v.elastic_magnitude
        plan.uniform("elastic.coarse", [-m] * cells, [m] * cells)
    _intensity_plan(p, plan)
    return plan


def _intensity_plan(p: AugmentParams, plan: DrawPlan) -> None:
    v, nd = p.views, p.ndim
    steps = (  # (name, probability, parameter, low, high, neutral), one parameter per sample
        ("contrast", v.contrast_prob, "gamma", v.gamma[0], v.gamma[1], 1.0),
        ("hist", v.hist_shift_prob, None, 0, 0, 0),
        (
            "scale",
            v.scale_intensity_prob,
            "factor",
            1 - v.scale_intensity,
            1 + v.scale_intensity,
            1,
        ),
        ("shift", v.shift_intensity_prob, "offset", -v.shift_intensity, v.shift_intensity, 0),
        ("noise", v.noise_prob, "std", 0.0, v.noise_std, 0.0),
    )
    for name, prob, key, lo, hi, neutral in steps:
        if prob <= 0:
            continue
        on = plan.coin(f"{name}.on", [prob])
        if key is not None:
            plan.uniform(f"{name}.{key}", [lo], [hi], on, neutral)
        elif name == "hist":  # see intensity.hist_curves; keep 0.5 is the identity curve
            low, high = v.hist_points
            plan.uniform("hist.last", [low - 1], [high], integer=True)
            plan.uniform("hist.keep", [1.0] * (high - 2), [0.0] * (high - 2), on, 0.5)
    if v.bias_field_prob > 0:
        on, terms = plan.coin("bias.on", [v.bias_field_prob]), len(ops.bias_terms(nd))
        plan.uniform("bias.coeff", [0.0] * terms, [v.bias_field_coeff] * terms, on)
    if v.blur_prob > 0:
        on = plan.coin("blur.on", [v.blur_prob])
        plan.uniform("blur.sigma", [v.blur_sigma[0]] * nd, [v.blur_sigma[1]] * nd, on)
    if v.sharpen_prob > 0:
        on = plan.coin("sharpen.on", [v.sharpen_prob])
        plan.uniform("sharpen.s1", [0.5], [1.0], on)
        plan.uniform("sharpen.u", [0.0], [1.0])
        plan.uniform("sharpen.alpha", [10.0], [30.0], on)
    if v.dropout_prob > 0:
        on = plan.coin("dropout.on", [v.dropout_prob])
        lo = [max(1, math.ceil(v.dropout_size[0] * s)) for s in p.size] * v.dropout_holes
        hi = [max(1, math.ceil(v.dropout_size[1] * s)) + 1 for s in p.size] * v.dropout_holes
        plan.uniform("dropout.length", lo, hi, on, 0.0, integer=True)
        plan.uniform("dropout.start", [0.0] * len(lo), [1.0] * len(lo))


def _constants(p: AugmentParams, dev: torch.device, dense_bias: bool) -> dict:
    v, nd, size = p.views, p.ndim, p.size
    c: dict = {
        "eye": torch.eye(nd, device=dev),  # the linear part: the shift is appended to it
        "planes": geo.plane_basis(nd, geo.PLANES[nd], dev),
        "rot90": geo.plane_basis(nd, [tuple(v.rot90_axes)], dev),
        "coords": geo.grid_coordinates(size, dev),
        "boxes": ops.box_constants(size, dev, shift=0.5),  # see intensity()
        "dropout_room": torch.tensor([s + 1 for s in size] * v.dropout_holes, device=dev),
    }
    if len(set(size)) > 1:  # in (x, y[, z]) order
        half = torch.tensor(size[::-1], dtype=torch.float32, device=dev) / 2
        c["aspect"] = half[None, :] / half[:, None]
    index = torch.arange(v.hist_points[1] + 1, dtype=torch.float32, device=dev)
    c["hist_index"] = (index, index + 2)
    edges = {}
    for s in dict.fromkeys(size):
        pixel, edge = torch.arange(s, device=dev), torch.arange(s + 1, device=dev)
        edges[s] = (edge[None, :] - pixel[:, None]).float() - 0.5
    c["blur_edges"] = [edges[s] for s in size] if len(edges) > 1 else list(edges.values())
    radius = max(1, math.ceil(4 * max(v.blur_sigma[1], 1.0 if v.sharpen_prob > 0 else 0.0)))
    c["blur_taps"] = torch.arange(-radius - 0.5, radius + 1.0, 1.0, device=dev)
    if dense_bias:
        c["bias_basis"] = ops.bias_basis(size, dev)
    elif nd == 3:
        terms = ops.bias_terms(3)
        scatter = torch.zeros(len(terms), 64, device=dev)
        for t, (i, j, k) in enumerate(terms):
            scatter[t, 16 * i + 4 * j + k] = 1
        c["bias_scatter"] = scatter
        c["legendre"] = tuple(ops.legendre(torch.linspace(-1, 1, s, device=dev), 3) for s in size)
    return c
