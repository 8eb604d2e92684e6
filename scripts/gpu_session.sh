#!/usr/bin/env bash
# The GPU measurements of the open issues, in one device call (about 10 minutes on an H100).
# From the project root, on this machine:  bash ../shared/gpu/stage.sh
# Then with the device tool:  run(command="bash scripts/gpu_session.sh", carry=[".gpu"])
# Results land in $OUT (at most 8 files come back); copy them into results/ with the commands below.
set -uo pipefail
source .gpu/setup.sh || exit 1
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"

# issue 2: MultiMNIST EW with the paper's settings (100 epochs) - test accuracy and seconds per epoch
python3 -m mtl_bench run dataset=multimnist trainer.epochs=100 trainer.progress=never \
    hydra.run.dir=/tmp/runs/multimnist_ew_100 2>&1 | tail -3
cp /tmp/runs/multimnist_ew_100/summary.json "$OUT/multimnist_ew_100_summary.json"

# issue 6: MultiMNIST epoch against the resident-batch floor; host syncs per step; a 12-run sweep
python3 scripts/bench_epoch.py --data "$MTL_BENCH_DATA" --out "$OUT/bench_epoch.csv"
python3 scripts/profile_step.py --data "$MTL_BENCH_DATA" --out "$OUT/profile_step.csv"
python3 scripts/bench_sweep.py --data "$MTL_BENCH_DATA" --jobs 6 --epochs 5 --out "$OUT/bench_sweep.csv"
ls -l "$OUT"
