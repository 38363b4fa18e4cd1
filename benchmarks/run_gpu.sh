#!/usr/bin/env bash
# Run the benchmarks on a GPU machine, in order, each under a time limit; logs and JSON results go
# to $OUT (or benchmarks/results). Usage: benchmarks/run_gpu.sh DATA_DIR [micro|pneumoniamnist|adrenalmnist3d|mednist ...]
set -u
DATA=${1:?data folder}; shift
OUT=${OUT:-$PWD/benchmarks/results}
export MEDCONTRAST_BENCH_RESULTS=$OUT PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$PWD
cd "$(dirname "$0")"
run() { local limit=$1; shift; echo "== $*"; timeout "$limit" "$@" 2>&1 | grep -v -i "warn" | tee -a "$OUT/log.txt" | tail -40; }
for what in "$@"; do
  case $what in
    micro)
      run 60 python bench_loss.py --batch 256 1024 --dim 128
      run 100 python bench_views.py --workers 8
      run 210 python bench_throughput.py --workers 8 --steps 30
      PYTHONPATH=$LIGHTLY:$PYTHONPATH run 120 python bench_lightly.py --workers 8 --steps 30 ;;
    pneumoniamnist|adrenalmnist3d|mednist)
      run "${LIMIT:-500}" python bench_label_efficiency.py "$what" --data "$DATA" --work /tmp/le ;;
  esac
done
