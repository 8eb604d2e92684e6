#!/usr/bin/env bash
# The GPU measurements of the open issues, in device calls of under 10 minutes each (an H100).
# From the project root, on this machine:  bash ../shared/gpu/stage.sh
# plus quadprog (UPGrad's QP solver; the GPU image lacks it), which setup.sh installs with the rest:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .gpu/wheels quadprog==0.1.14
# Then with the device tool, one call per part:
#   run(command="bash scripts/gpu_session.sh spine", carry=[".gpu"])    # issues 2 and 6
#   run(command="bash scripts/gpu_session.sh benches", carry=[".gpu"])  # issues 3 and 5
#   run(command="bash scripts/gpu_session.sh tables 1e-4,5e-4,1e-3", carry=[".gpu"])  # issue 4, half the lr grid
#   run(command="bash scripts/gpu_session.sh tables 5e-3,1e-2,5e-2", carry=[".gpu"])  # issue 4, the other half
# then here: untar both archives side by side and
#   mtl-bench table sweeps/sener_* --tune trainer.lr --baseline stl > results/sener_koltun_multimnist/table.md
# Results land in $OUT (at most 8 files come back); commit them under results/ with these commands.
set -uo pipefail
part=${1:?usage: gpu_session.sh spine|benches|tables LRS}
source .gpu/setup.sh || exit 1
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/device.txt"

case "$part" in
spine)
    # issue 2: MultiMNIST EW with the paper's settings (100 epochs): test accuracy, seconds per epoch
    python3 -m mtl_bench run dataset=multimnist trainer.epochs=100 trainer.progress=never \
        hydra.run.dir=/tmp/runs/multimnist_ew_100 2>&1 | tail -3
    cp /tmp/runs/multimnist_ew_100/summary.json "$OUT/multimnist_ew_100_summary.json"
    # issue 6: epoch against the resident-batch floor; host syncs per step; a 12-run sweep
    python3 scripts/bench_epoch.py --data "$MTL_BENCH_DATA" --out "$OUT/bench_epoch.csv"
    python3 scripts/profile_step.py --data "$MTL_BENCH_DATA" --out "$OUT/profile_step.csv"
    python3 scripts/bench_sweep.py --data "$MTL_BENCH_DATA" --jobs 6 --epochs 5 --out "$OUT/bench_sweep.csv"
    ;;
benches)
    # issue 3: every strategy against EW (MultiLeNet, 40-task MLP, dilated ResNet-50 + 3 dense heads)
    python3 scripts/bench_strategies.py --out "$OUT/bench_strategies.csv"
    # issue 5: EW and two gradient methods on NYUv2- and CelebA-shaped tensors
    python3 scripts/bench_dense.py --out "$OUT/bench_dense.csv"
    ;;
tables)
    # issue 4: Sener & Koltun MultiMNIST (3 seeds, full protocol) for part of the lr grid, several
    # runs at once on the GPU; the lr is chosen on validation when the halves are tabled together
    lrs=${2:?give the learning rates of this half, e.g. 1e-4,5e-4,1e-3}
    python3 -m mtl_bench reproduce sener_koltun_multimnist "trainer.lr=$lrs" hydra/launcher=local \
        hydra.launcher.n_jobs=12 trainer.progress=never hydra.sweep.dir=/tmp/sweeps/sener 2>&1 | tail -30
    tar czf "$OUT/sener_koltun_multimnist_lr${lrs//,/_}.tgz" -C /tmp/sweeps/sener --exclude=checkpoint.pt .
    ;;
esac
ls -l "$OUT"
