#!/usr/bin/env bash
# The checks that need a GPU, as one prepared run (docs/performance.md, "On a GPU").
#
# A session that is lent a GPU machine runs this once and quotes what it prints:
#
#   mkdir -p .device-data && cp -r ../shared/data/mnist .device-data/   # the data travels
#   echo /.device-data/ >> .git/info/exclude
#   # then, through the device tool (carry .device-data), in the repository root:
#   DESCENTLAB_DATA=.device-data bash scripts/device_check.sh
#
# It uses the machine's own python3 and torch (the sources from src/, nothing installed)
# and writes each step's output into $OUT (the device tool brings that folder back).
# Each step has its own time limit (150 s), so one slow step cannot take all the others'
# time, and no step starts past the whole run's budget (540 s), so the run fits one
# 10-minute device call (it has not yet run on a GPU).
#
# SMOKE=1 runs every step at toy size on the CPU (digits, one epoch): CI runs it that
# way (tests/bench/test_device_check.py), so the script cannot rot between GPU sessions.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/device-check}
mkdir -p "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
    DEVICE=cpu DATASET=digits SUBSET="" EPOCHS=1 SIZES=64k REPEATS=2 HIDDEN=16 LIMIT=300
    BUDGET=600
else
    DEVICE=cuda DATASET=mnist SUBSET="--subset 10000" EPOCHS=3 SIZES=1M,25M REPEATS=10
    HIDDEN=100 LIMIT=150
    BUDGET=540  # one device call may run 600 s: leave room for start-up and the copy back
fi
failed=0

step() {  # step NAME COMMAND...: run with a time limit, keep its output, say how it went
    local name=$1
    shift
    local start=$SECONDS left=$((BUDGET - SECONDS))
    [ "$left" -gt "$LIMIT" ] && left=$LIMIT
    if [ "$left" -le 5 ]; then
        echo "== $name: not run (the whole run's $BUDGET s are spent)"
        failed=1
        return
    fi
    timeout "$left" "$@" >"$OUT/$name.txt" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s ($*)"
    tail -n 25 "$OUT/$name.txt"
    [ "$rc" = 0 ] || failed=1
}

step environment "$PY" -c "
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, p.total_memory // 2**30, 'GiB,', p.multi_processor_count, 'SMs')
else:
    print('no CUDA device: the checks run on the CPU')
"
# Our optimizers against torch.optim's foreach and fused kernels, on the device.
step optim "$PY" -m descentlab bench optim --device "$DEVICE" --sizes "$SIZES" \
    --repeats "$REPEATS" --warmup 2
# The tutorial's MLP trained on the device, end to end (validation, test, checkpoints).
step train "$PY" -m descentlab train --preset dlt-mlp --dataset "$DATASET" --device "$DEVICE" \
    --max-epochs "$EPOCHS" --out "$OUT/dlt-mlp-run"
# Fused sweeps: runs/hour fused vs one by one, and the largest member-vs-separate
# difference (cuBLAS's batched products need not round as its single ones do).
# shellcheck disable=SC2086  # SUBSET is empty or two words
step sweep-logreg "$PY" -m descentlab bench sweep --device "$DEVICE" --dataset "$DATASET" \
    $SUBSET --model logreg --batch-size 64 --max-epochs "$EPOCHS" --seeds 0 \
    --optimizers sgd,momentum,nesterov,adagrad,rmsprop,adam,adadelta \
    --lrs 0.001,0.003,0.01,0.03
# shellcheck disable=SC2086
step sweep-mlp "$PY" -m descentlab bench sweep --device "$DEVICE" --dataset "$DATASET" \
    $SUBSET --model mlp --hidden "$HIDDEN" --batch-size 64 --max-epochs "$EPOCHS" \
    --seeds 0,1 --optimizers sgd,momentum,adam --lrs 0.003,0.01,0.03
# Data parallelism through torchrun's launcher: two gloo ranks on the CPU; on CUDA, two
# nccl ranks where there are two GPUs, else the one-line refusal of a second rank.
DDP=(train --dataset digits --model mlp --hidden 32 --max-epochs 2 --nproc 2)
step ddp-gloo "$PY" -m descentlab "${DDP[@]}" --device cpu --out "$OUT/ddp-gloo"
if [ "$DEVICE" = cuda ]; then
    ngpu=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
    if [ "$ngpu" -ge 2 ]; then
        step ddp-nccl "$PY" -m descentlab "${DDP[@]}" --device cuda --out "$OUT/ddp-nccl"
    else
        step ddp-refused bash -c '"$@"; test $? = 2' - \
            "$PY" -m descentlab "${DDP[@]}" --device cuda --out "$OUT/ddp-refused"
    fi
fi
echo "== device check: $([ $failed = 0 ] && echo 'every step passed' || echo 'a step FAILED')"
exit $failed
