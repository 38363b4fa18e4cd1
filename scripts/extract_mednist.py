"""Extract MedNIST_resized.tar.gz (checked against its md5) into a cache folder, outside the repo.

python scripts/extract_mednist.py ../shared/data/mednist/MedNIST_resized.tar.gz ~/.cache/medcontrast/mednist
medcontrast index ~/.cache/medcontrast/mednist/resized --out runs/data/mednist.csv --labels-from-folders
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
from pathlib import Path

MD5 = "fa7643fa8cae3229bdc4679fff8af0b2"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("archive")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    archive, out = Path(args.archive), Path(args.out_dir)
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    if digest != MD5:
        print(f"error: {archive} has md5 {digest}, expected {MD5}", file=sys.stderr)
        return 1
    if (out / "resized").is_dir():
        print(f"{out / 'resized'} already exists; nothing to do")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    print(f"extracted to {out / 'resized'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
