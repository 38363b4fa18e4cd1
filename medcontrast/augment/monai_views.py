"""Path (a): per-sample MONAI transforms, run in DataLoader workers.

Every draw is seeded from (seed, epoch, sample index, view), so a view does not depend on the
number of workers or on where a run was resumed, and the two views of one sample are two
independent draws (one MONAI dictionary transform over two keys would apply the same draw to
both; see DESIGN.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffine,
    RandBiasField,
    RandCoarseDropout,
    RandFlip,
    RandGaussianNoise,
    RandGaussianSharpen,
    RandGaussianSmooth,
    RandHistogramShift,
    RandomizableTransform,
    RandRotate90,
    RandScaleCrop,
    RandScaleIntensity,
    RandShiftIntensity,
    RandSmoothDeform,
    Resize,
)
from torch.utils.data import Dataset

from medcontrast.augment.params import AugmentParams
from medcontrast.data.pairs import partner_index
from medcontrast.seeding import Stream, draw_seed


class _Maybe(RandomizableTransform):
    """Apply a transform that has no ``prob`` argument of its own with probability ``prob``."""

    def __init__(self, transform, prob: float) -> None:
        super().__init__(prob)
        self.transform = transform

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed=None if seed is None else seed + 1, state=state)
        return self

    def __call__(self, img):
        self.randomize(None)
        return self.transform(img) if self._do_transform else img


def build_monai_transform(p: AugmentParams) -> Compose:
    """The per-sample pipeline for one view; input and output (C, *size) tensors: the spatial
    steps, then the intensity steps (a step whose probability is 0 is left out)."""
    return Compose(_spatial_steps(p) + _intensity_steps(p))


def _spatial_steps(p: AugmentParams) -> list:
    """Crop and resize, flips, 90-degree turns, affine, smooth deformation."""
    nd, size = p.ndim, p.size
    mode = "bilinear"
    ts: list = []
    if p.views.crop_prob > 0:
        crop = Compose(
            [
                RandScaleCrop(
                    roi_scale=p.views.crop_scale[0],
                    max_roi_scale=p.views.crop_scale[1],
                    random_center=True,
                    random_size=True,
                ),
                Resize(spatial_size=size, mode=mode if nd == 2 else "trilinear"),
            ]
        )
        ts.append(_Maybe(crop, p.views.crop_prob))
    if p.views.flip_prob > 0:
        ts += [RandFlip(prob=p.views.flip_prob, spatial_axis=a) for a in p.views.flip_axes]
    if p.views.rot90_prob > 0:
        ts.append(RandRotate90(prob=p.views.rot90_prob, max_k=3, spatial_axes=p.views.rot90_axes))
    if p.views.affine_prob > 0:
        rot = p.rotate_rad if nd == 2 else (p.rotate_rad,) * 3
        ts.append(
            RandAffine(
                prob=p.views.affine_prob,
                rotate_range=rot,
                scale_range=(p.views.scale,) * nd,
                translate_range=[p.views.translate * s for s in size],
                padding_mode="zeros",
                mode=mode,
            )
        )
    if p.views.elastic_prob > 0:
        ts.append(
            RandSmoothDeform(
                spatial_size=size,
                rand_size=p.elastic_grid,
                prob=p.views.elastic_prob,
                def_range=2 * p.views.elastic_magnitude,
                field_mode="bicubic" if nd == 2 else "trilinear",
                grid_mode="bilinear",
                grid_padding_mode="zeros",
            )
        )
    return ts


def _intensity_steps(p: AugmentParams) -> list:
    """Contrast, histogram shift, scale and shift, bias field, noise, blur, sharpen, dropout."""
    size = p.size
    ts: list = []
    if p.views.contrast_prob > 0:
        ts.append(RandAdjustContrast(prob=p.views.contrast_prob, gamma=p.views.gamma))
    if p.views.hist_shift_prob > 0:
        ts.append(
            RandHistogramShift(num_control_points=p.views.hist_points, prob=p.views.hist_shift_prob)
        )
    if p.views.scale_intensity_prob > 0:
        ts.append(
            RandScaleIntensity(factors=p.views.scale_intensity, prob=p.views.scale_intensity_prob)
        )
    if p.views.shift_intensity_prob > 0:
        ts.append(
            RandShiftIntensity(offsets=p.views.shift_intensity, prob=p.views.shift_intensity_prob)
        )
    if p.views.bias_field_prob > 0:
        ts.append(
            RandBiasField(
                degree=3, coeff_range=(0.0, p.views.bias_field_coeff), prob=p.views.bias_field_prob
            )
        )
    if p.views.noise_prob > 0:
        noise = _Speckle if p.views.noise_kind == "speckle" else RandGaussianNoise
        ts.append(noise(prob=p.views.noise_prob, mean=0.0, std=p.views.noise_std, sample_std=True))
    if p.views.blur_prob > 0:
        ts.append(
            RandGaussianSmooth(
                sigma_x=p.views.blur_sigma,
                sigma_y=p.views.blur_sigma,
                sigma_z=p.views.blur_sigma,
                prob=p.views.blur_prob,
            )
        )
    if p.views.sharpen_prob > 0:
        ts.append(RandGaussianSharpen(prob=p.views.sharpen_prob))
    if p.views.dropout_prob > 0:
        # One RandCoarseDropout per hole: with holes=H, MONAI draws each hole's size from the
        # previous hole's size up to the maximum (it reuses the variable), so later holes grow;
        # here every hole's sides are independent draws, as on the batched path.
        holes = [
            RandCoarseDropout(
                holes=1,
                spatial_size=[max(1, math.ceil(p.views.dropout_size[0] * s)) for s in size],
                max_spatial_size=[max(1, math.ceil(p.views.dropout_size[1] * s)) for s in size],
                fill_value=0.0,
                prob=1.0,
            )
            for _ in range(p.views.dropout_holes)
        ]
        ts.append(_Maybe(Compose(holes), p.views.dropout_prob))
    return ts


class _Speckle(RandGaussianNoise):
    """Multiplicative Gaussian noise, x (1 + n): MONAI has no speckle transform (its Rician and
    Gibbs noise model MRI), so RandGaussianNoise's draws are reused: the same n, multiplied in."""

    def __call__(self, img, mean=None, randomize: bool = True):
        return img + (super().__call__(img, mean, randomize) - img) * img


class MonaiViews:
    """Callable: one sample (C, *size) -> one view, seeded by the given integers."""

    def __init__(self, params: AugmentParams) -> None:
        self.params = params
        self.transform = build_monai_transform(params)

    def __call__(self, x: torch.Tensor, *seed: int) -> torch.Tensor:
        self.transform.set_random_state(seed=draw_seed(*seed))
        # Some MONAI transforms (RandCoarseDropout) write into their input: the second view of a
        # sample must not inherit the first view's holes.
        out = self.transform(x.clone())
        out = out.as_tensor() if hasattr(out, "as_tensor") else torch.as_tensor(out)
        return out.to(torch.float32).contiguous()


class TwoViewDataset(Dataset):
    """Cached samples -> ``{"view1", "view2", "index", "patient"}`` through MONAI transforms.

    Args:
        array: (N, C, *size) cache (memory map or array).
        params: augmentation parameters.
        seed: run seed; call :meth:`set_epoch` before each epoch.
        patients: (N,) integer patient codes, used for same-patient masking.
        partner_sets / set_of: the images each image may pair with, for patient-aware
            positives (:func:`medcontrast.data.pairs.partner_index`; None: two views of one image).
        labels: (N,) integer class codes (SupCon).
    """

    def __init__(
        self,
        array: np.ndarray,
        params: AugmentParams,
        seed: int,
        patients: np.ndarray | None = None,
        partner_sets: list[np.ndarray] | None = None,
        set_of: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        self.array = array
        self.labels = labels
        self.views = MonaiViews(params)
        self.seed = seed
        self.epoch = 0
        self.patients = patients if patients is not None else np.arange(len(array))
        self.partner_sets, self.set_of = partner_sets, set_of

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Sample ``item``: an index (in the epoch of :meth:`set_epoch`), or the (epoch, index)
        a :class:`~medcontrast.data.sampling.BatchSampler` gives (what DataLoader workers use:
        their copy of the dataset never sees ``set_epoch``)."""
        epoch, i = item if isinstance(item, tuple) else (self.epoch, item)
        j = partner_index(i, self.partner_sets, self.set_of, draw_seed(self.seed, epoch))
        x1 = torch.from_numpy(np.asarray(self.array[i], dtype=np.float32))
        x2 = x1 if j == i else torch.from_numpy(np.asarray(self.array[j], dtype=np.float32))
        item = {
            "view1": self.views(x1, self.seed, epoch, i, Stream.VIEW_1),
            "view2": self.views(x2, self.seed, epoch, i, Stream.VIEW_2),
            "index": torch.tensor(i),
            "patient": torch.tensor(int(self.patients[i])),
        }
        if self.labels is not None:
            item["label"] = torch.tensor(int(self.labels[i]))
        return item
