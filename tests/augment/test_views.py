"""Two views, two draws; both execution paths draw from the same distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.monai_views import MonaiViews, TwoViewDataset
from medcontrast.augment.params import AugmentParams
from medcontrast.config import views_preset
from medcontrast.errors import MedContrastError


def _images(n: int, size: tuple[int, ...]) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand((n, 1, *[4] * len(size)), generator=g)
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=size, mode=mode).numpy().astype(np.float16)


@pytest.mark.parametrize("nd", [2, 3])
def test_views_differ_and_are_reproducible(nd):
    size = (32,) * nd
    params = AugmentParams.from_config(
        views_preset("radiograph" if nd == 2 else "mri", flip_axes=[0]), nd, size
    )
    ds = TwoViewDataset(_images(4, size), params, seed=3)
    a, b = ds[1], ds[1]
    assert not torch.equal(a["view1"], a["view2"])
    assert torch.equal(a["view1"], b["view1"]) and torch.equal(a["view2"], b["view2"])
    assert np.array_equal(ds.array, _images(4, size))  # the cache is never written to
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["view1"], a["view1"])
    views = BatchedViews(params)
    x = torch.from_numpy(_images(4, size).astype(np.float32))
    v1 = views(x, torch.Generator().manual_seed(5))
    assert v1.shape == x.shape and torch.isfinite(v1).all()
    assert torch.equal(v1, views(x, torch.Generator().manual_seed(5)))
    g = torch.Generator().manual_seed(5)
    assert not torch.equal(views(x, g), views(x, g))


def _only(**kw) -> dict:
    return {"preset": "none", **kw}


def _stat_monai(params, x, stat, n):
    mv = MonaiViews(params)
    return np.array([stat(x[0], mv(x[0], 11, i)) for i in range(n)])


def _stat_batched(params, x, stat, n, sparse=None):
    out = BatchedViews(params, sparse=sparse)(
        x[:1].expand(n, *x.shape[1:]).clone(), torch.Generator().manual_seed(11)
    )
    return np.array([stat(x[0], out[i]) for i in range(n)])


SPARSE = [False, True]  # every sample through every step (a GPU's path), or the picked ones


RAMP = torch.linspace(0.05, 0.95, 16)[None, :, None].expand(1, 16, 16).clone()  # (1, 16, 16)


def _ratio(a, b):
    return float((b / a).mean())


def _shift(a, b):
    return float((b - a).mean())


def _gamma(a, b):  # a ramp stays a ramp: out = lo + (v - lo)/range ** g * range
    lo, hi = a.min(), a.max()
    v = (a[0, 8, 8] - lo) / (hi - lo)
    w = (b[0, 8, 8] - lo) / (hi - lo)
    return float(torch.log(w) / torch.log(v))


def _noise(a, b):
    return float((b - a).std())


def _speckle(a, b):  # multiplicative: the relative change has the noise's spread everywhere
    return float(((b - a) / a).std())


def _bias(a, b):
    return float(torch.log(b[0, 0, 0] / a[0, 0, 0]))


def _flipped(a, b):
    return float(b[0, 0, 8] > b[0, 15, 8])


def _crop_side(a, b):  # the ramp runs along axis 0: a crop of side s keeps s of its range
    return float((b[0, -1, 8] - b[0, 0, 8]) / (a[0, -1, 8] - a[0, 0, 8]))


def _dropped(a, b):
    return float((b == 0).float().mean())


def _centre(a, b):  # a ramp's middle pixel: moved by shifts and zooms, remapped by curves
    return float(b[0, 8, 8])


def _corner(a, b):  # which corner a quarter turn brought the ramp's top row to
    return float(2 * (b[0, 0, 0] > b[0, -1, 0]) + (b[0, 0, 0] > b[0, 0, -1]))


def _peak(a, b):  # an impulse blurred: its centre keeps 1 / (kernel mass there)
    return float(b[0, 8, 8])


CASES = {
    "scale": (_only(scale_intensity_prob=0.7, scale_intensity=0.3), _ratio),
    "shift": (_only(shift_intensity_prob=0.7, shift_intensity=0.2), _shift),
    "gamma": (_only(contrast_prob=0.8, gamma=[0.6, 1.6]), _gamma),
    "noise": (_only(noise_prob=0.6, noise_std=0.1), _noise),
    "speckle": (_only(noise_prob=0.6, noise_std=0.2, noise_kind="speckle"), _speckle),
    "bias": (_only(bias_field_prob=0.7, bias_field_coeff=0.2), _bias),
    "flip": (_only(flip_prob=0.4, flip_axes=[0]), _flipped),
    "crop": (_only(crop_prob=0.9, crop_scale=[0.5, 1.0]), _crop_side),
    "dropout": (_only(dropout_prob=0.6, dropout_holes=2, dropout_size=[0.1, 0.3]), _dropped),
    "affine": (_only(affine_prob=0.8, rotate_deg=20, scale=0.2, translate=0.1), _centre),
    "hist": (_only(hist_shift_prob=0.8, hist_points=[4, 9]), _centre),
    "rot90": (_only(rot90_prob=0.7), _corner),
    "blur": (_only(blur_prob=0.7, blur_sigma=[0.3, 1.5]), _peak),
    "sharpen": (_only(sharpen_prob=0.7), _peak),
}
IMPULSE = torch.zeros(1, 16, 16)
IMPULSE[0, 8, 8] = 1.0
DIAGONAL = (RAMP + RAMP.transpose(1, 2)) / 2  # rot90 needs an image that is not symmetric
DIAGONAL[0, 0, 3] += 0.5


@pytest.mark.parametrize("case", list(CASES))
def test_paths_draw_from_the_same_distribution(case):
    kw, stat = dict(CASES[case][0]), CASES[case][1]
    params = AugmentParams.from_config(views_preset(kw.pop("preset"), **kw), 2, (16, 16))
    inputs = {"bias": torch.ones(1, 16, 16), "blur": IMPULSE, "sharpen": IMPULSE, "rot90": DIAGONAL}
    x = inputs.get(case, RAMP)[None].clone()
    n = 400
    a = _stat_monai(params, x, stat, n)
    for sparse in SPARSE:
        b = _stat_batched(params, x, stat, n, sparse)
        if case == "crop":  # MONAI crops whole pixels: compare the continuous draw at pixel size
            a, b = np.round(a * 16) / 16, np.round(b * 16) / 16
            assert abs(a.mean() - b.mean()) < 0.03
            continue
        assert ks_2samp(a, b).pvalue > 0.001, (case, sparse, a.mean(), b.mean())


@pytest.mark.parametrize("sparse", [None, *SPARSE])
def test_speckle_leaves_black_black(sparse):
    """Multiplicative noise: an anechoic (zero) region stays exactly zero on both paths."""
    x = RAMP.clone()[None]
    x[..., :4] = 0.0
    kw = dict(_only(noise_prob=1.0, noise_std=0.3, noise_kind="speckle"))
    params = AugmentParams.from_config(views_preset(kw.pop("preset"), **kw), 2, (16, 16))
    if sparse is None:
        out = torch.stack([MonaiViews(params)(x[0], 3, i) for i in range(4)])
    else:
        out = BatchedViews(params, sparse=sparse)(
            x.expand(4, -1, -1, -1).clone(), torch.Generator()
        )
    assert torch.equal(out[..., :4], torch.zeros_like(out[..., :4]))
    assert not torch.equal(out[..., 4:], x[..., 4:].expand_as(out[..., 4:]))


def test_invalid_settings_are_clear():
    with pytest.raises(MedContrastError, match="crop_scale"):
        AugmentParams.from_config(views_preset("none", crop_scale=[0.9, 0.5]), 2, (16, 16))
    with pytest.raises(MedContrastError, match="flip_axes"):
        AugmentParams.from_config(views_preset("none", flip_axes=[2]), 2, (16, 16))


@pytest.mark.parametrize(
    ("nd", "preset"), [(2, "radiograph"), (3, "mri"), (2, "ultrasound"), (2, "mammography")]
)
def test_presets_give_the_same_pixel_statistics_on_both_paths(nd, preset):
    """Whole presets, every step at once: each view's mean and spread agree between paths."""
    size = (16,) * nd
    params = AugmentParams.from_config(views_preset(preset, flip_axes=[0]), nd, size)
    x = torch.from_numpy(_images(1, size).astype(np.float32))
    n = 300 if nd == 2 else 150
    for stat in (lambda a, b: float(b.mean()), lambda a, b: float(b.std())):
        a = _stat_monai(params, x, stat, n)
        for sparse in SPARSE:
            b = _stat_batched(params, x, stat, n, sparse)
            assert ks_2samp(a, b).pvalue > 0.001, (nd, sparse, a.mean(), b.mean())


def test_two_views_are_independent_draws():
    """Two calls with one generator: no correlation between a sample's two views' draws."""
    params = AugmentParams.from_config(views_preset("radiograph", flip_axes=[0]), 2, (16, 16))
    views, g = BatchedViews(params), torch.Generator().manual_seed(2)
    x = RAMP[None].expand(2000, 1, 16, 16).clone()
    v1, v2 = views(x, g), views(x, g)
    m1, m2 = v1.flatten(1).mean(1), v2.flatten(1).mean(1)
    assert abs(float(torch.corrcoef(torch.stack([m1, m2]))[0, 1])) < 0.1


@pytest.mark.parametrize("sparse", SPARSE)
def test_a_pair_is_two_independent_views(sparse):
    """One call on both stacked (as the trainer makes them): every sample's two views are
    independent draws, like two calls."""
    params = AugmentParams.from_config(views_preset("radiograph", flip_axes=[0]), 2, (16, 16))
    x = RAMP[None].expand(2000, 1, 16, 16).clone()
    v1, v2 = BatchedViews(params, sparse=sparse).pair(x, x, torch.Generator().manual_seed(2))
    assert v1.shape == v2.shape == x.shape and not torch.equal(v1, v2)
    m1, m2 = v1.flatten(1).mean(1), v2.flatten(1).mean(1)
    assert abs(float(torch.corrcoef(torch.stack([m1, m2]))[0, 1])) < 0.1


@pytest.mark.parametrize("sparse", SPARSE)
@pytest.mark.parametrize("nd", [2, 3])
def test_skipped_steps_leave_samples_unchanged(nd, sparse):
    """Probability 0 everywhere but one step at 0.5: the samples it skipped are bit-identical."""
    steps = (dict(contrast_prob=0.5), dict(hist_shift_prob=0.5), dict(blur_prob=0.5))
    for kw in (*steps, dict(noise_prob=0.5)):
        size = (16,) * nd
        params = AugmentParams.from_config(views_preset("none", **{**_none(), **kw}), nd, size)
        x = torch.rand(64, 1, *size, generator=torch.Generator().manual_seed(0))
        out = BatchedViews(params, sparse=sparse)(x, torch.Generator().manual_seed(1))
        same = (out == x).flatten(1).all(1)
        assert 10 < int(same.sum()) < 54, kw


def _none() -> dict:
    keys = [k for k in views_preset("none").__dict__ if k.endswith("_prob")]
    return {k: 0.0 for k in keys}
