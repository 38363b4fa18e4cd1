"""Read one manifest sample into a float32 array, with its geometry.

One reader per format, all returning :class:`Loaded`. pydicom and nibabel do the decoding; we
write the glue ourselves because the manifest already fixed slice order and series membership
(MONAI's readers would re-sort and re-group), and because each failure must name its file.

Array conventions: 2D images are (H, W) = (rows, columns); 3D volumes are (X, Y, Z) with a RAS
affine, the convention of MONAI's ``MetaTensor`` and NIfTI.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcontrast.data.dicom_geometry import order_by_position, ras_affine
from medcontrast.errors import first_line


class SampleLoadError(Exception):
    """A sample could not be read; the message names the file and the reason in words."""


@dataclass
class Loaded:
    """Pixels and geometry of one sample.

    Attributes:
        array: float32, (H, W) for 2D or (X, Y, Z) for 3D.
        spacing: physical size of a pixel/voxel along each array axis (mm), or None if unknown.
        affine: 4x4 RAS affine for 3D arrays (None for 2D).
    """

    array: np.ndarray
    spacing: tuple[float, ...] | None
    affine: np.ndarray | None = None


def _quiet_pydicom():
    import pydicom

    # pydicom warns and logs about odd header values by quoting them, and values can be
    # identifiers: keep both out of our output.
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    return pydicom


def read_dicom_header(path: Path):
    """Read a DICOM file's elements without loading large values (pixel data stays on disk).

    Raises:
        SampleLoadError: when the file ends inside an element (pydicom only warns about that).
    """
    pydicom = _quiet_pydicom()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(str(path), defer_size=1024, force=True)
    if any("End of file" in str(w.message) for w in caught):
        raise SampleLoadError(f"{path.name}: truncated file: it ends inside a DICOM element")
    return ds


def _decode(ds, path: Path) -> np.ndarray:
    """Decoded, rescaled pixels (frames, rows, cols) with MONOCHROME1 turned into MONOCHROME2."""
    from pydicom.pixels import apply_rescale

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        name = getattr(ts, "name", str(ts))
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        if "raised by all available plugins" in str(exc) and len(lines) > 1:
            # Decoders exist but each refused the stream: the data is corrupt or non-conformant.
            raise SampleLoadError(
                f"{path.name}: compressed pixel data ({name}) could not be decoded: {lines[1][:200]}"
            ) from exc
        raise SampleLoadError(
            f"{path.name}: cannot decode pixel data compressed as {name}: no decoder installed "
            f"(install pylibjpeg, pylibjpeg-libjpeg and pylibjpeg-openjpeg)"
        ) from exc
    except Exception as exc:  # pydicom raises ValueError/EOFError/... for short or corrupt data
        raise SampleLoadError(
            f"{path.name}: pixel data is truncated or corrupt ({type(exc).__name__}: "
            f"{first_line(exc)})"
        ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    arr = np.asarray(raw)
    if samples > 1:
        arr = _to_grey(arr, str(ds.get("PhotometricInterpretation", "RGB")))
    if frames == 1:
        arr = arr[None]
    arr = apply_rescale(arr.astype(np.float32), ds).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # MONOCHROME1 shows low values as white; flip within the observed range so that bone is
        # bright in every image the encoder sees.
        arr = (arr.max() + arr.min()) - arr
    return arr


def _to_grey(arr: np.ndarray, photometric: str) -> np.ndarray:
    """Colour (..., 3) to luminance; pydicom already converts YBR to RGB when decoding."""
    del photometric
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return arr[..., :3].astype(np.float32) @ weights


def _spacing_2d(ds) -> tuple[float, float] | None:
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures and measures[0].get("PixelSpacing"):
            ps = measures[0].PixelSpacing
            return float(ps[0]), float(ps[1])
    return None


def frame_geometry(ds) -> tuple[list[list[float]], list[float]] | None:
    """Per-frame positions and the shared orientation of an enhanced multi-frame image."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return None
    shared = ds.get("SharedFunctionalGroupsSequence")
    positions, orientation = [], None
    for item in per_frame:
        pos = item.get("PlanePositionSequence")
        if not pos or pos[0].get("ImagePositionPatient") is None:
            return None
        positions.append([float(v) for v in pos[0].ImagePositionPatient])
        ori = item.get("PlaneOrientationSequence")
        if orientation is None and ori and ori[0].get("ImageOrientationPatient") is not None:
            orientation = [float(v) for v in ori[0].ImageOrientationPatient]
    if orientation is None and shared:
        ori = shared[0].get("PlaneOrientationSequence")
        if ori and ori[0].get("ImageOrientationPatient") is not None:
            orientation = [float(v) for v in ori[0].ImageOrientationPatient]
    if orientation is None:
        return None
    return positions, orientation


def load_dicom_file(path: Path) -> Loaded:
    """One DICOM file: a 2D image, or a 3D volume when it holds several frames."""
    try:
        ds = read_dicom_header(path)
    except SampleLoadError:
        raise
    except Exception as exc:
        raise SampleLoadError(
            f"{path.name}: not a readable DICOM file ({first_line(exc)})"
        ) from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise SampleLoadError(f"{path.name}: DICOM file holds no pixel data")
    arr = _decode(ds, path)
    spacing = _spacing_2d(ds)
    if arr.shape[0] == 1:
        return Loaded(arr[0], spacing)
    geometry = frame_geometry(ds)
    ps = spacing or (1.0, 1.0)
    if geometry is None:
        # Frames without geometry (cine, some NM): stacked in file order; the slice step is
        # unknown, so the spacing is reported as unknown and the affine uses unit steps.
        vol = np.ascontiguousarray(arr.transpose(2, 1, 0))
        return Loaded(vol, None, np.diag([-ps[1], -ps[0], 1.0, 1.0]))
    positions, orientation = geometry
    order, dist = order_by_position(positions, orientation)
    step = float(np.median(np.diff(dist))) if len(dist) > 1 else 1.0
    step = step if step > 0 else 1.0
    vol = arr[order].transpose(2, 1, 0)  # (frames, rows, cols) -> (cols, rows, frames)
    affine = ras_affine(orientation, positions[order[0]], ps, step)
    return Loaded(np.ascontiguousarray(vol), (ps[1], ps[0], step), affine)


def load_dicom_series(paths: list[Path]) -> Loaded:
    """A single-frame DICOM series, slices already in manifest order (ascending along the normal)."""
    slices, positions, orientation, spacing = [], [], None, None
    for p in paths:
        try:
            ds = read_dicom_header(p)
        except SampleLoadError:
            raise
        except Exception as exc:
            raise SampleLoadError(
                f"{p.name}: not a readable DICOM file ({first_line(exc)})"
            ) from exc
        slices.append(_decode(ds, p)[0])
        positions.append([float(v) for v in ds.ImagePositionPatient])
        orientation = orientation or [float(v) for v in ds.ImageOrientationPatient]
        spacing = spacing or _spacing_2d(ds)
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise SampleLoadError(
            f"{paths[0].name} (series of {len(paths)} files): slices differ in size "
            f"{sorted(shapes)}"
        )
    # The manifest lists slices ascending along the normal; a different order means the archive
    # changed since it was indexed.
    order, dist = order_by_position(positions, orientation)
    if not np.array_equal(order, np.arange(len(order))):
        raise SampleLoadError(
            f"{paths[0].name} (series of {len(paths)} files): files are not in slice order "
            "(re-index the archive)"
        )
    step = float(np.median(np.diff(dist))) if len(dist) > 1 else 1.0
    ps = spacing or (1.0, 1.0)
    vol = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, cols, z) -> (cols, rows, z)
    affine = ras_affine(orientation, positions[0], ps, step if step > 0 else 1.0)
    return Loaded(np.ascontiguousarray(vol), (ps[1], ps[0], abs(step) or 1.0), affine)


def load_nifti(path: Path) -> Loaded:
    """A NIfTI-1/2 file; trailing singleton axes are dropped, 4D is refused."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise SampleLoadError(
            f"{path.name}: not a readable NIfTI file ({first_line(exc)})"
        ) from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if data.ndim > 3:
        raise SampleLoadError(
            f"{path.name}: {data.ndim}D volume {data.shape}; medcontrast needs 3D"
        )
    if data.ndim == 3 and data.shape[2] == 1:
        return Loaded(np.ascontiguousarray(data[:, :, 0].T), (zooms[1], zooms[0]))
    if data.ndim != 3:
        raise SampleLoadError(f"{path.name}: {data.ndim}D array {data.shape}; expected 3D")
    return Loaded(data, zooms, np.asarray(img.affine, dtype=np.float64))


def load_image(path: Path) -> Loaded:
    """A PNG/JPEG/TIFF export; colour is converted to luminance."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) > 1:
                raise SampleLoadError(
                    f"{path.name}: multi-page image ({img.n_frames} pages) is not supported"
                )
            if img.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA", "PA"):
                img = img.convert("L")
            arr = np.asarray(img, dtype=np.float32)
    except SampleLoadError:
        raise
    except Exception as exc:
        raise SampleLoadError(f"{path.name}: not a readable image ({first_line(exc)})") from exc
    if arr.ndim != 2:
        raise SampleLoadError(f"{path.name}: image array has shape {arr.shape}; expected 2D")
    return Loaded(arr, None)


class NpzStore:
    """Lazily opened MedMNIST-style ``.npz`` members, loaded once per (file, key)."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    def get(self, path: Path, key: str) -> np.ndarray:
        k = (str(path), key)
        if k not in self._arrays:
            try:
                with np.load(path, allow_pickle=False) as data:
                    self._arrays[k] = data[key]
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                raise SampleLoadError(
                    f"{path.name}: cannot read array {key!r} ({first_line(exc)})"
                ) from exc
        return self._arrays[k]


def load_npz_member(path: Path, member: str, store: NpzStore | None = None) -> Loaded:
    """Image ``member`` = ``"<split>:<index>"`` of a MedMNIST file (3D arrays are (D, H, W))."""
    split, _, idx = member.partition(":")
    arr = (store or NpzStore()).get(path, f"{split}_images")[int(idx)]
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] != arr.shape[-1]:
        arr = _to_grey(arr, "RGB")  # MedMNIST colour sets are (H, W, 3)
    if arr.ndim == 3:
        return Loaded(arr, (1.0, 1.0, 1.0), np.eye(4))
    return Loaded(arr, (1.0, 1.0))


def load_sample(
    fmt: str, sources: list[Path], member: str = "", npz_store: NpzStore | None = None
) -> Loaded:
    """Dispatch on the manifest's ``format`` column."""
    if fmt == "dicom":
        return load_dicom_file(sources[0])
    if fmt == "dicom-series":
        return load_dicom_series(sources)
    if fmt == "nifti":
        return load_nifti(sources[0])
    if fmt == "image":
        return load_image(sources[0])
    if fmt == "npz":
        return load_npz_member(sources[0], member, npz_store)
    raise SampleLoadError(f"unknown sample format {fmt!r}")


def check_pixels(arr: np.ndarray, name: str) -> None:
    """Refuse arrays a model cannot learn from: non-finite values or a single constant value."""
    if arr.size == 0:
        raise SampleLoadError(f"{name}: empty image")
    finite = np.isfinite(arr)
    if not finite.all():
        raise SampleLoadError(f"{name}: {int((~finite).sum())} NaN or infinite pixel values")
    if float(arr.max()) == float(arr.min()):
        raise SampleLoadError(
            f"{name}: every pixel has the same value ({float(arr.min()):g}); blank image"
        )
