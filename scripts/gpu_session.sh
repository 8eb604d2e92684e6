#!/usr/bin/env bash
# GPU measurements and runs, on a host with an NVIDIA GPU, from the repository root:
#
#   bash scripts/gpu_session.sh spine          # MultiMNIST EW (100 epochs), the epoch against its floor,
#                                              # host syncs per step, a 12-run sweep sequential vs concurrent
#   bash scripts/gpu_session.sh benches        # every strategy x gradient space against the floors (MultiLeNet,
#                                              # 40-task conv encoder, dilated ResNet-50); dense models
#   bash scripts/gpu_session.sh tables [LRS]   # the Sener & Koltun lr grid (or the learning rates LRS, e.g.
#                                              # 1e-4,5e-4,1e-3) into results/sener_koltun_multimnist/runs
#
# Each part takes under ten minutes on an H100/H200 (`tables`: half the grid). Results go to $OUT
# (default gpu_results/); `tables` also leaves the run folders in results/, where the CPU sweeps of
# scripts/studies.sh put them, so `git add results/sener_koltun_multimnist/runs` keeps them.
# Needs: python3 with mtl-bench installed from this clone (`pip install -e .`, which brings
# torch, Hydra and the joblib launcher), nvidia-smi, and MTL_BENCH_DATA holding MNIST/raw
# (`dataset.root=$MTL_BENCH_DATA dataset.download=true` on a run fetches it once; README, Data).
set -uo pipefail
part=${1:?usage: gpu_session.sh spine|benches|tables [LRS]}
: "${MTL_BENCH_DATA:?set MTL_BENCH_DATA to the folder holding MNIST/raw}"
export PYTHONUNBUFFERED=1
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt" || {
    echo "gpu_session.sh: nvidia-smi found no NVIDIA GPU; run it on a GPU host (scripts/studies.sh runs the same studies on the CPU)" >&2
    exit 2
}

case "$part" in
spine)
    # a checkpoint made on the GPU resumes there (its random-number states load back on the host)
    python3 -m mtl_bench run trainer.device=cuda trainer.epochs=2 hydra.run.dir=/tmp/runs/resume_cuda 2>&1 | tail -1
    python3 -m mtl_bench run trainer.device=cuda trainer.epochs=3 hydra.run.dir=/tmp/runs/resume_cuda 2>&1 \
        | tail -2 | tee "$OUT/resume_cuda.txt"
    python3 -m mtl_bench run dataset=multimnist trainer.epochs=100 trainer.progress=never \
        hydra.run.dir=/tmp/runs/multimnist_ew_100 2>&1 | tail -3
    cp /tmp/runs/multimnist_ew_100/summary.json "$OUT/multimnist_ew_100_summary.json"
    python3 scripts/bench_epoch.py --data "$MTL_BENCH_DATA" --out "$OUT/bench_epoch.csv"
    python3 scripts/profile_step.py --data "$MTL_BENCH_DATA" --out "$OUT/profile_step.csv"
    python3 scripts/bench_sweep.py --data "$MTL_BENCH_DATA" --jobs 6 --epochs 5 --out "$OUT/bench_sweep.csv"
    ;;
benches)
    python3 scripts/bench_strategies.py --out "$OUT/bench_strategies.csv"
    python3 scripts/bench_dense.py --out "$OUT/bench_dense.csv"
    ;;
tables)
    LRS=${2:-1e-2,5e-3,5e-2,1e-3,5e-4,1e-4} JOBS=12 MTL_BENCH="python3 -m mtl_bench" \
        bash scripts/studies.sh sener_grid 2>&1 | grep -E "^(==|!!)|sweep .*: " | tail -20
    tar czf "$OUT/sener_koltun_multimnist_runs.tgz" --exclude=checkpoint.pt results/sener_koltun_multimnist/runs
    ;;
*)
    echo "unknown part $part: choose spine, benches or tables" >&2; exit 2 ;;
esac
ls -l "$OUT"
