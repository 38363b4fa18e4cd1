#!/usr/bin/env bash
# Run the benchmarks on a GPU machine, in order, each under a time limit; logs and JSON results go
# to $OUT (or benchmarks/results). Usage: benchmarks/run_gpu.sh DATA_DIR [micro|resume|report|pneumoniamnist|adrenalmnist3d|mednist ...]
# (resume needs no DATA_DIR content: it makes a small phantom archive; pass any folder, e.g. .)
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
    resume)  # issue 12: torchrun --nproc_per_node 1 on CUDA, kill -9 after a checkpoint, --resume
      run 300 python bench_resume.py --nproc 1 --device cuda --steps 60 --kill-after 30 ;;
    report)  # issue 13: the headline against a fine-tuned random init and the labels saved, on real data
      run "${LIMIT:-420}" python bench_label_efficiency.py pneumoniamnist --data "$DATA" --work /tmp/le \
        --evaluate "budgets.fractions=[0.01,0.03,0.1,0.3]"
      # Rebuilt from whatever finished (budgets run smallest first), also if the limit cut it short.
      E=/tmp/le/eval/pneumoniamnist
      run 60 python -m medcontrast.cli report "$E"
      cp "$E/report.md" "$E/label_efficiency_auroc.png" "$E/summary.csv" "$E/results.csv" "$OUT/" ;;
    finetune-parallel)  # issue 15: fine-tunes of one budget side by side on one GPU
      run "${LIMIT:-240}" python bench_finetune_parallel.py pneumoniamnist --data "$DATA" \
        --parallel 1 4 8 --seeds 8 ;;
    pneumoniamnist|adrenalmnist3d|mednist)
      # The full configs; FT_PARALLEL fine-tunes at once (results do not depend on it).
      run "${LIMIT:-500}" python bench_label_efficiency.py "$what" --data "$DATA" --work /tmp/le \
        --evaluate "finetune.parallel=${FT_PARALLEL:-6}" ;;
  esac
done
