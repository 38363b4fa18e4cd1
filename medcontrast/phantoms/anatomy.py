"""Synthetic anatomy for the embedded archive: chest radiographs and head volumes.

Labels are anatomical (a consolidation in a lung; a focal lesion in the brain) while patient
size, pose, exposure, contrast curve, bias field, blur and noise vary freely and carry no label,
so that a model has to learn anatomy, not acquisition. Values are in [0, 1] ("attenuation" for
radiographs, tissue brightness for MR) or Hounsfield units for CT.
"""

from __future__ import annotations

import numpy as np


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-mask from a level function d (< 0 inside), edge ``width`` in its units."""
    return 1.0 / (1.0 + np.exp(np.clip(d * np.float32(1 / max(width, 1e-6)), -50, 50)))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a sum of random plane waves slower than ``scale`` px.

    (Cheaper than upsampling a coarse random grid, which dominated the archive's build time.)
    """
    axes = [np.arange(s, dtype=np.float32) for s in shape]
    out = np.zeros(shape, np.float32)
    for _ in range(6):
        freq = rng.uniform(-1, 1, len(shape)) / scale * 2 * np.pi
        phase = rng.uniform(0, 2 * np.pi)
        wave = phase
        for dim, (axis, f) in enumerate(zip(axes, freq, strict=True)):
            view = [1] * len(shape)
            view[dim] = -1
            wave = wave + (f * axis).reshape(view)
        out += np.cos(wave) * rng.uniform(0.5, 1.0)
    return out / (np.abs(out).max() + 1e-6)


def chest_anatomy(rng: np.random.Generator) -> dict[str, float]:
    """One patient's thorax: fixed across all of that patient's radiographs."""
    return {
        "size": rng.uniform(0.80, 1.15),
        "body_w": rng.uniform(0.84, 0.98),
        "soft": rng.uniform(0.28, 0.40),
        "lung_cx": rng.uniform(0.32, 0.41),
        "lung_rx": rng.uniform(0.22, 0.33),
        "lung_ry": rng.uniform(0.55, 0.76),
        "lung_cy": rng.uniform(-0.10, 0.04),
        "lung_asym": rng.uniform(-0.06, 0.06),
        "dome_l": rng.uniform(0.70, 0.90),
        "dome_r": rng.uniform(0.70, 0.90),
        "lung_dark": rng.uniform(0.65, 0.85),
        "rib_freq": rng.uniform(15.0, 23.0),
        "rib_phase": rng.uniform(0, 2 * np.pi),
        "rib_slope": rng.uniform(0.15, 0.45),
        "rib_gain": rng.uniform(0.05, 0.12),
        "heart_x": rng.uniform(0.04, 0.18),
        "heart_y": rng.uniform(0.25, 0.42),
        "heart_rx": rng.uniform(0.22, 0.38),
        "heart_ry": rng.uniform(0.18, 0.30),
        "media_w": rng.uniform(0.07, 0.15),
        "spine_w": rng.uniform(0.045, 0.08),
        "clav_y": rng.uniform(-0.75, -0.58),
        "clav_tilt": rng.uniform(0.1, 0.3),
        "breast": float(rng.random() < 0.45) * rng.uniform(0.04, 0.10),
        "texture_seed": float(rng.integers(2**31)),
        "texture_gain": rng.uniform(0.01, 0.03),
    }


def consolidation_site(rng: np.random.Generator) -> dict[str, float]:
    """Where and how large a study's consolidation is (one study: one site)."""
    return {
        "side": float(rng.integers(2)),
        "x": rng.uniform(0.28, 0.44),
        "y": rng.uniform(-0.35, 0.30),
        "r": rng.uniform(0.20, 0.32),
        "elong": rng.uniform(1.0, 1.5),
        "gain": rng.uniform(0.24, 0.36),
    }


def chest_radiograph(
    rng: np.random.Generator,
    anatomy: dict[str, float],
    site: dict[str, float] | None = None,
    shape: tuple[int, int] = (224, 192),
) -> np.ndarray:
    """A frontal chest radiograph, (rows, cols) in [0, 1], bright = more attenuation.

    Args:
        rng: draws the pose of this exposure (nuisance).
        anatomy: the patient (see :func:`chest_anatomy`).
        site: a pneumonia-like consolidation in one lung, or None.
    """
    a = anatomy
    h, w = shape
    y, x = np.meshgrid(
        np.linspace(-1, 1, h, dtype=np.float32),
        np.linspace(-1, 1, w, dtype=np.float32),
        indexing="ij",
    )
    # Pose of this exposure (nuisance).
    theta = np.float32(np.deg2rad(rng.uniform(-6, 6)))
    x, y = np.cos(theta) * x - np.sin(theta) * y, np.sin(theta) * x + np.cos(theta) * y
    x = x - rng.uniform(-0.06, 0.06)
    y = y - rng.uniform(-0.05, 0.05)
    xs = x / (a["size"] * rng.uniform(0.97, 1.03))

    body = _soft(np.abs(xs / a["body_w"]) ** 4 + np.abs((y - 0.25) / 1.3) ** 4 - 1, 0.04)
    img = a["soft"] * body
    if a["breast"] > 0:
        for side in (-1, 1):
            img += (
                a["breast"]
                * _soft(((xs - side * 0.42) / 0.30) ** 2 + ((y - 0.55) / 0.22) ** 2 - 1, 0.3)
                * body
            )
    trng = np.random.default_rng(int(a["texture_seed"]))
    texture = _smooth_noise(trng, shape, 6)
    lung_masks = []
    for k, side in enumerate((-1, 1)):
        cx = side * a["lung_cx"] + (a["lung_asym"] if side > 0 else 0)
        rx = a["lung_rx"] * (1 + (a["lung_asym"] if side < 0 else -a["lung_asym"]))
        ry, cy = a["lung_ry"], a["lung_cy"]
        d = ((xs - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 - 1
        dome_h = a["dome_l"] if k == 0 else a["dome_r"]
        dome = y - (cy + ry * dome_h - 0.30 * ((xs - cx) / rx) ** 2)  # diaphragm
        lung_masks.append(_soft(d, 0.10) * _soft(dome, 0.04))
    lungs = np.clip(lung_masks[0] + lung_masks[1], 0, 1)
    img = img * (1 - a["lung_dark"] * lungs) + a["texture_gain"] * np.clip(texture, 0, None) * lungs
    # Ribs: curved bands over the lungs, posterior ribs sloping down laterally.
    rib_y = y - a["rib_slope"] * np.abs(xs) + 0.25 * xs**2
    ribs = np.clip(np.sin(rib_y * a["rib_freq"] + a["rib_phase"]) - 0.35, 0, None) / 0.65
    img += a["rib_gain"] * ribs * lungs
    # Heart (left of the patient = right of the image), mediastinum, spine, clavicles.
    heart = _soft(
        ((xs - a["heart_x"]) / a["heart_rx"]) ** 2 + ((y - a["heart_y"]) / a["heart_ry"]) ** 2 - 1,
        0.25,
    )
    mediastinum = _soft(np.abs(xs) - a["media_w"] - 0.05 * (y + 1), 0.05) * _soft(y - 0.5, 0.1)
    img = np.maximum(img, 0.36 * np.maximum(heart, mediastinum) * body)
    img += 0.16 * _soft(np.abs(xs) - a["spine_w"], 0.02) * body
    clav = _soft(np.abs(y - a["clav_y"] - a["clav_tilt"] * np.abs(xs)) - 0.025, 0.012)
    img += 0.14 * clav * _soft(np.abs(xs) - 0.62, 0.05)
    if site is not None:
        side = int(site["side"])
        cx = (-1 if side == 0 else 1) * site["x"]
        r = site["r"]
        blob = _soft(((xs - cx) / r) ** 2 + ((y - site["y"]) / (r * site["elong"])) ** 2 - 1, 0.30)
        patchy = 0.8 + 0.2 * _smooth_noise(rng, shape, 16)
        img += site["gain"] * blob * lung_masks[side] * patchy
    return np.clip(img, 0, 1)


def radiograph_acquisition(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Detector and exposure nuisance: blur, heel-effect gradient, contrast curve, noise."""
    from scipy.ndimage import gaussian_filter

    h, w = img.shape
    out = gaussian_filter(img, rng.uniform(0.4, 1.2))
    ramp = np.linspace(-1, 1, h)[:, None] * rng.uniform(-0.15, 0.15)
    out = out * (1 + ramp + 0.08 * _smooth_noise(rng, (h, w), 48))
    out = np.clip(out, 0, None) ** rng.uniform(0.75, 1.3)
    out = out * rng.uniform(0.75, 1.15) + rng.uniform(0.0, 0.08)
    out += rng.normal(0, rng.uniform(0.008, 0.025), out.shape)
    return np.clip(out, 0, 1)


def head_volume(
    rng: np.random.Generator,
    lesion: bool,
    modality: str,
    shape: tuple[int, int, int] = (48, 56, 32),
) -> np.ndarray:
    """A head, indexed (x = left->right... as stored, y, z = inferior->superior).

    Returns MR brightness in [0, 1] or CT Hounsfield units, float32.
    Args:
        lesion: draw a focal lesion (bright on MR, hyperdense haemorrhage-like on CT).
        modality: "MR" or "CT".
    """
    gx, gy, gz = np.meshgrid(
        *(np.linspace(-1, 1, s, dtype=np.float32) for s in shape), indexing="ij"
    )
    coords = np.stack([gx, gy, gz], -1)
    angles = np.deg2rad(rng.uniform(-8, 8, 3))
    rot = _rotation(angles)
    coords = coords @ rot.T.astype(np.float32) - rng.uniform(-0.06, 0.06, 3).astype(np.float32)
    size = rng.uniform(0.85, 1.05)
    u, v, w = (coords[..., i] / size for i in range(3))
    radius = np.sqrt((u / 0.80) ** 2 + (v / 0.90) ** 2 + (w / 0.85) ** 2)
    head = _soft(radius - 1.0, 0.02)
    brain = _soft(radius - 0.88, 0.02)
    white = _soft(np.sqrt((u / 0.55) ** 2 + (v / 0.68) ** 2 + ((w - 0.05) / 0.55) ** 2) - 1, 0.08)
    vent = sum(
        _soft(
            np.sqrt(((u - s * 0.12) / 0.08) ** 2 + (v / 0.30) ** 2 + ((w - 0.1) / 0.18) ** 2) - 1,
            0.05,
        )
        for s in (-1, 1)
    )
    lesion_mask = np.zeros(shape, np.float32)
    if lesion:
        centre = rng.uniform(-0.45, 0.45, 3) * np.array([0.8, 0.9, 0.7])
        r = rng.uniform(0.12, 0.22) * np.array(rng.uniform(0.8, 1.25, 3))
        d = np.sqrt(sum(((c - m) / rr) ** 2 for c, m, rr in zip((u, v, w), centre, r, strict=True)))
        lesion_mask = _soft(d - 1, 0.1) * brain
    skull = np.clip(head - brain, 0, 1)
    if modality == "CT":
        hu = -1000 * (1 - head) + 1000 * skull
        tissue = 38 * (1 - white) + 28 * white
        hu += brain * (tissue * (1 - vent) + 6 * vent)
        hu += lesion_mask * rng.uniform(35, 50)
        hu += rng.normal(0, rng.uniform(3, 8), shape)
        return hu.astype(np.float32)
    t1 = 0.25 * skull + brain * (0.55 * (1 - white) + 0.78 * white)
    t1 = t1 * (1 - 0.8 * vent * brain) + 0.9 * _soft(np.abs(radius - 0.97) - 0.02, 0.01)
    t1 += lesion_mask * rng.uniform(0.25, 0.4)
    bias = 1 + rng.uniform(0.1, 0.3) * _smooth_noise(rng, shape, 16)
    t1 = np.clip(t1 * bias * rng.uniform(0.8, 1.2), 0, None)
    noise = rng.uniform(0.01, 0.04)
    t1 = np.sqrt((t1 + rng.normal(0, noise, shape)) ** 2 + rng.normal(0, noise, shape) ** 2)
    return t1.astype(np.float32)


def _rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx
