#!/usr/bin/env bash
# The benchmark suite, unchanged, on a CUDA machine: one call, results into OUT.
#
#   bash benchmarks/run_gpu.sh DATA_ROOT OUT [extra lungseg benchmark options]
#
# DATA_ROOT holds montgomery/ and shenzhen/ (at least their test split). Runs from a source
# checkout without installing (PYTHONPATH=src), so it works on a machine with no package
# registry as long as torch, numpy, opencv-python-headless, scipy and click are there.
set -euo pipefail
DATA=${1:?usage: run_gpu.sh DATA_ROOT OUT}
OUT=${2:?usage: run_gpu.sh DATA_ROOT OUT}
shift 2
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
python3 -m lungseg benchmark "$DATA/montgomery" "$DATA/shenzhen" --device cuda \
    --formats eager,torchscript,onnx,trt-fp32,trt-fp16,cpp-onnxruntime,cpp-libtorch \
    --peer-formats eager --seconds 1.5 -o "$OUT" "$@"
