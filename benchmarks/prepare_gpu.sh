#!/usr/bin/env bash
# Prepare, on a machine with the package registry, what benchmarks/run_gpu.sh needs on a GPU
# machine that has no network: wheels of what its image lacks in .whl/ and the data in .gpudata/
# (both ignored by git; together about 44 MiB of the 64 MiB a checkout may carry).
#
#   benchmarks/prepare_gpu.sh [SHARED_DATA]        default: ../shared/data beside the checkout
#
# Wheels: MONAI, nibabel, pydicom, kornia (+ kornia_rs), lightly and lightning_utilities (the one package lightly's
# loss, transforms and heads import beyond the image's torch, torchvision, timm, numpy, pandas,
# scikit-learn, matplotlib, tqdm, pyyaml), one version each, without dependencies, at the versions
# installed here where they are. Data: the MedMNIST .npz files (MedNIST's 62 MB archive does not
# fit beside them; copy it yourself for the mednist part and leave the rest out).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:-$ROOT/../shared/data}
cd "$ROOT"
rm -rf .whl && mkdir -p .whl .gpudata/medmnist
for pkg in monai nibabel pydicom lightly lightning_utilities kornia; do
  version=$(python -c "import importlib.metadata as m; print(m.version('$pkg'))" 2>/dev/null || true)
  python -m pip download -q --no-deps -d .whl "$pkg${version:+==$version}"
done
# kornia imports kornia_rs, a compiled wheel per Python version: one for each the image may have,
# in a folder of its own that run_gpu.sh installs from with --find-links (pip picks the match).
version=$(python -c "import importlib.metadata as m; print(m.version('kornia_rs'))" 2>/dev/null || true)
for py in 3.11 3.12 3.13; do
  python -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --platform manylinux_2_17_x86_64 -d .whl/kornia_rs "kornia_rs${version:+==$version}" || true
done
for f in pneumoniamnist.npz adrenalmnist3d.npz; do
  cp "$SRC/medmnist/$f" .gpudata/medmnist/
done
# The archive part's pool: MedNIST at 28 px and PneumoniaMNIST as .npz arrays (about 32 MiB;
# MedNIST's JPEG archive would not fit), made once from the shared data.
python benchmarks/archive_pool.py --data "$SRC" --out .gpudata/archive
rm -rf .gpudata/mednist-extracted .gpudata/mednist_classes.json
ls .whl
du -sh .whl .gpudata
