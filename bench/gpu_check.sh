#!/usr/bin/env bash
# One prepared GPU check (for a lent device machine; about 5 min): the CUDA path of the core and the IAKD step
# throughput at CIFAR shapes. Needs only torch (+ torchvision, filelock) in `python3`; no Ray, no dataset.
#   bash bench/gpu_check.sh            # prints everything; copies the log to $OUT when set
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="${OUT:-/tmp}/gpu_check.log"
{
  python3 -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '|',
torch.cuda.get_device_name() if torch.cuda.is_available() else '-')"
  # 1. the core's CUDA path end to end: device=auto picks the GPU, bf16 autocast, channels_last, teacher cache
  python3 -m iakd_core train --preset cifar100-resnet56-resnet20 --dataset synthetic --val-size 96 --epochs 2 \
    --teacher-epochs 2 --teacher-cache /tmp/iakd-teachers --method iakd --kd-weight 0.5 --json
  # 2. step throughput, ours vs a hand-written loop, CIFAR shapes, bf16 on and off
  for precision in bf16 fp32; do
    python3 bench/bench_step.py --preset cifar100-resnet56-resnet20 --device cuda --precision "$precision" \
      --images 16384 --repeats 3
  done
} 2>&1 | tee "$log"
