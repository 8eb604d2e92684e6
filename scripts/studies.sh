#!/usr/bin/env bash
# The CPU studies of results/ (see results/README.md), as idempotent Hydra sweeps into fixed folders
# under results/<study>/runs/. Re-running a stage skips completed runs and resumes unfinished ones
# from their checkpoints, on any machine.
#
#   bash scripts/studies.sh STAGE [STAGE ...]     stages: sener_lr001 zoo_multimnist zoo_synthetic gong sener_grid gradnorm_toy
#   bash scripts/studies.sh all                   every stage, in that order
#
# Two runs at once with one intra-op thread each (measured faster than one run with two threads on a
# 2-core machine: results/README.md). Environment: MTL_BENCH (the command, default mtl-bench),
# MTL_BENCH_DATA (holds MNIST/raw), JOBS (runs at once, default 2), RESULTS (default results/ of the clone),
# LRS (sener_grid: the learning rates to run, default the paper's six).
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
RESULTS="${RESULTS:-$here/results}"
JOBS="${JOBS:-2}"
read -r -a MTL <<< "${MTL_BENCH:-mtl-bench}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
LAUNCH=(hydra/launcher=local "hydra.launcher.n_jobs=$JOBS" trainer.progress=never)
# Stopping the script stops its whole sweep: SIGTERM / Ctrl-C go on to every process it started,
# the joblib workers included (they outlive a killed parent otherwise); each run then ends
# `interrupted` after its last finished epoch and resumes at the next start.
descendants() { local child; for child in $(pgrep -P "$1"); do echo "$child"; descendants "$child"; done; }
stop() {
    trap - TERM INT
    local pids; pids=$(descendants $$)
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null
    wait
    exit 143
}
trap stop TERM INT

sweep() {  # sweep DIR OVERRIDES...: one Hydra multirun into DIR (a failed run does not stop the stage)
    local dir="$1"; shift
    echo "== $(date -u +%FT%TZ) $dir: ${MTL[*]} run -m $*"
    "${MTL[@]}" run -m "${LAUNCH[@]}" "hydra.sweep.dir=$dir" "$@" &
    wait $! || echo "!! sweep $dir exited with $?"   # in the background: a signal reaches stop() at once
}

sener_lr001() {  # Sener & Koltun 2018 Table 3 at the one lr 0.01 (21 runs); also part of sener_grid
    local out="$RESULTS/sener_koltun_multimnist/runs" exp=+experiment=sener_koltun_multimnist
    sweep "$out/mtl" "$exp" strategy=uniform,uw,gradnorm,mgda seed=0,1,2 trainer.lr=1e-2
    sweep "$out/stl" "$exp" strategy=ew 'dataset.tasks=[left],[right]' seed=0,1,2 trainer.lr=1e-2
    sweep "$out/ew_lr0.01" "$exp" strategy=ew seed=0,1,2 trainer.lr=1e-2
}

sener_grid() {  # the paper's six learning rates, lr chosen per method on validation (108 runs)
    local out="$RESULTS/sener_koltun_multimnist/runs" exp=+experiment=sener_koltun_multimnist
    local lrs="${LRS:-1e-2,5e-3,5e-2,1e-3,5e-4,1e-4}"   # LRS=...: a part of the grid (e.g. on a GPU with a time limit)
    sweep "$out/mtl" "$exp" strategy=uniform,uw,gradnorm,mgda seed=0,1,2 "trainer.lr=$lrs"
    sweep "$out/stl" "$exp" strategy=ew 'dataset.tasks=[left],[right]' seed=0,1,2 "trainer.lr=$lrs"
}

zoo_multimnist() {  # every strategy at its defaults, 20 epochs (75 runs)
    local out="$RESULTS/zoo_multimnist/runs" exp=+experiment=zoo_multimnist
    sweep "$out/mtl" "$exp" seed=0,1,2
    sweep "$out/stl" "$exp" strategy=ew 'dataset.tasks=[left],[right]' seed=0,1,2
}

zoo_synthetic() {  # every strategy at its defaults on T = 10 and T = 2 tasks of spread scales (69 + 30, 69 + 6 runs)
    local t
    for t in 10 2; do
        local out="$RESULTS/zoo_synthetic/runs/t$t" exp="+experiment=zoo_synthetic_t$t"
        local stl; stl=$(seq -s, 0 $((t - 1)) | sed 's/\([0-9]*\)/[task\1]/g')
        sweep "$out/mtl" "$exp" seed=0,1,2
        sweep "$out/stl" "$exp" strategy=ew "dataset.tasks=$stl" seed=0,1,2
    done
}

gong() {  # Gong et al. 2019: ew, dwa, uw and single-task baselines at five label fractions (75 runs + 3)
    local out="$RESULTS/gong_multimnist_label_fraction/runs" exp=+experiment=gong_multimnist_label_fraction
    local fractions='0.03,0.1,1.0,{left:0.1,right:1.0},{left:1.0,right:0.1}'
    sweep "$out/mtl" "$exp" seed=0,1,2
    sweep "$out/stl" "$exp" strategy=ew 'dataset.tasks=[left],[right]' "dataset.label_fraction=$fractions" seed=0,1,2
    # at 0.03, ew at half its step (the mean of the losses): does the step size explain ew against uw?
    sweep "$out/ablation" "$exp" strategy=uniform dataset.label_fraction=0.03 seed=0,1,2
}

gradnorm_toy() {  # Chen et al. 2018 Figure 2: ew against GradNorm (alpha 0.12) on sigma = (1, 100) (6 runs)
    sweep "$RESULTS/gradnorm_toy/runs/mtl" +experiment=gradnorm_toy seed=0,1,2
}

all() { sener_lr001; zoo_multimnist; zoo_synthetic; gong; sener_grid; gradnorm_toy; }

[ $# -gt 0 ] || { sed -n 2,12p "$0"; exit 2; }
for stage in "$@"; do
    declare -F "$stage" >/dev/null || { echo "unknown stage $stage"; exit 2; }
    "$stage"
done
