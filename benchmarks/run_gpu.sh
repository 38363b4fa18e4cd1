#!/usr/bin/env bash
# The benchmarks on a GPU machine, from a plain checkout, in at most $BUDGET seconds (default 480).
#
#   benchmarks/run_gpu.sh [PART ...]        default parts: views loss throughput resume
#
# Parts: views, view-share (the views' share of a SimCLR step), loss, throughput (with lightly
# beside it; THROUGHPUT_ARGS, e.g. "--workloads 2d-64 --views-compile on graphs", and
# THROUGHPUT_LIMIT s), resume (kill -9 and --resume under
# torchrun), report (headline on PneumoniaMNIST at four budgets), converged (the same at 1%, 10% and
# all labels with each fine-tune's best and last step), proxy3d (the CPU proxy's AdrenalMNIST3D
# comparison at 10% and all labels, 4 hours and more on two cores), finetune-parallel, and the full
# configs pneumoniamnist, adrenalmnist3d, mednist, and archive (pretrain once on MedNIST and
# PneumoniaMNIST, evaluate on both; its arrays in $DATA/archive, made by prepare_gpu.sh). Each
# part runs under its own time limit, cut to what is left of the budget (a part with under 20 s
# left is skipped and says so); a part stopped by its limit keeps the rows it finished. Results:
# JSON lines in $OUT (default benchmarks/results), turned into docs/benchmarks.md by
# `python benchmarks/make_docs.py`; the log of every part is $OUT/log.txt.
#
# What the GPU image lacks is installed from wheels in $WHEELS (default .whl/, ignored by git) and
# the data is read from $DATA (default .gpudata/, ignored; MedMNIST .npz files under medmnist/):
# see docs/benchmarks.md for how to prepare both (benchmarks/prepare_gpu.sh).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$ROOT/.gpudata}
WHEELS=${WHEELS:-$ROOT/.whl}
OUT=${OUT:-$ROOT/benchmarks/results}
BUDGET=${BUDGET:-480}
START=$SECONDS
mkdir -p "$OUT"
PY=$(command -v python || command -v python3)
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then  # --no-deps: the image's torch must stay as it is
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/medcontrast-site "$WHEELS"/*.whl
  if [ -d "$WHEELS/kornia_rs" ]; then  # one wheel per Python version: pip picks this one's
    "$PY" -m pip install -q --no-index --no-deps --target /tmp/medcontrast-site \
      --find-links "$WHEELS/kornia_rs" kornia_rs
  fi
  export PYTHONPATH=/tmp/medcontrast-site${PYTHONPATH:+:$PYTHONPATH}
fi
# The machine's copy of the checkout may lack .git: MEDCONTRAST_BENCH_COMMIT=<hash> names it.
export MEDCONTRAST_BENCH_RESULTS=$OUT PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-}:$ROOT
cd "$ROOT/benchmarks"

run() {  # run LIMIT CMD ...: CMD under min(LIMIT, what is left of the budget)
  local limit=$1 left=$((BUDGET - (SECONDS - START))) began=$SECONDS rc
  shift
  ((limit > left)) && limit=$left
  if ((limit < 20)); then
    echo "== skipped, the budget is spent: $*" | tee -a "$OUT/log.txt"
    return
  fi
  echo "== [limit ${limit} s] $*" | tee -a "$OUT/log.txt"
  # SIGTERM first (the scripts write the rows they have), SIGKILL 15 s later.
  timeout -k 15 "$limit" "$@" >"$OUT/part.log" 2>&1
  rc=$?
  grep -v -i "warn" "$OUT/part.log" | tee -a "$OUT/log.txt" | tail -25
  echo "== exit $rc after $((SECONDS - began)) s" | tee -a "$OUT/log.txt"
}

pneumonia_report() {  # LIMIT WORK PREFIX EVALUATE_OVERRIDE...: the shipped PneumoniaMNIST
  # configs, the report rebuilt from whatever finished (budgets run smallest first, also if the
  # limit cut it short) and copied to $OUT with PREFIX before each name
  local limit=$1 work=$2 prefix=$3 f
  shift 3
  run "$limit" "$PY" bench_label_efficiency.py pneumoniamnist --data "$DATA" --work "$work" \
    --evaluate "$@"
  run 60 "$PY" -m medcontrast.cli report "$work/eval/pneumoniamnist"
  for f in report.md label_efficiency_auroc.png summary.csv results.csv; do
    cp "$work/eval/pneumoniamnist/$f" "$OUT/$prefix$f"
  done
}

Q=${QUICK:+--quick}  # QUICK=1: tiny settings, a CPU check of this script (the test suite's)
[ $# -gt 0 ] || set -- views loss throughput resume
for part in "$@"; do
  case $part in
    views) run 200 "$PY" bench_views.py --workers 8 --batch2d 256 --batch3d 32 $Q ;;
    view-share) run 150 "$PY" bench_view_share.py --compile on graphs $Q ;;
    loss) run 45 "$PY" bench_loss.py --batch 256 1024 4096 8192 --dim 128 $Q ;;
    throughput) run "${THROUGHPUT_LIMIT:-240}" "$PY" bench_throughput.py $Q ${THROUGHPUT_ARGS:-} ;;
    resume) run 120 "$PY" bench_resume.py --nproc 1 --device cuda --steps 60 --kill-after 30 $Q ;;
    report) pneumonia_report 420 /tmp/le "" "budgets.fractions=[0.01,0.03,0.1,0.3]" ;;
    converged)  # issue 45: every fine-tune until it stops improving (best/last steps in the
      # rows), 1%, 10% and all labels, 6 fine-tunes at once
      pneumonia_report 480 /tmp/conv converged_ "budgets.fractions=[0.01,0.1,1.0]" \
        "finetune.parallel=${FT_PARALLEL:-6}" ;;
    proxy3d)  # issue 45: SimCLR, BYOL and restoration against a converged random ResNet-10 on
      # AdrenalMNIST3D at 10% and all labels, 5 seeds (one fine-tune at 10% took 12 min on two
      # CPU cores: 20 of them, then 20 with all labels)
      run 480 "$PY" bench_proxy.py --datasets adrenalmnist3d --data "$DATA" --work /tmp/proxy \
        --pretrained simclr --pretrained byol method.name=byol \
        --pretrained restoration method.name=restoration --recipe converged-10-100 \
        "budgets.fractions=[0.1,1.0]" "finetune.parallel=${FT_PARALLEL:-6}" $Q ;;
    finetune-parallel)
      run 240 "$PY" bench_finetune_parallel.py pneumoniamnist --data "$DATA" --parallel 1 4 8 --seeds 8 ;;
    pneumoniamnist | adrenalmnist3d | mednist)  # FT_PARALLEL fine-tunes at once (same results)
      # METHOD=vicreg|dino|...: pretrain the dataset's config with that method instead;
      # CONFIG=adrenalmnist3d_mae|..._restoration|...: pretrain that shipped config instead.
      run 480 "$PY" bench_label_efficiency.py "$part" --data "$DATA" --work /tmp/le \
        --evaluate "finetune.parallel=${FT_PARALLEL:-6}" ${METHOD:+--pretrain method.name=$METHOD} \
        ${CONFIG:+--config $CONFIG} ;;
    archive)  # one encoder pretrained on MedNIST + PneumoniaMNIST, two tasks (issue 21)
      run 480 "$PY" bench_archive.py --full --data "$DATA" --pool "$DATA/archive" \
        --work /tmp/archive $Q ;;
    *) echo "== unknown part: $part" | tee -a "$OUT/log.txt" ;;
  esac
done
echo "== done in $((SECONDS - START)) s; results in $OUT" | tee -a "$OUT/log.txt"
