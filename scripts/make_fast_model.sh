#!/usr/bin/env bash
# The shipped fast model (src/lungseg/weights/fast.pt), from scratch, in order and resumable:
#   1. train runs/fast (scripts/train_sick_lungs.sh fast: distilled from the shipped default)
#   2. fit its quality head (view check on train images, Dice estimate calibrated on val)
#   3. package it as fp16 weights with its sha256 card
#   4. evaluate it on every test split, each set with its own extent
# Usage: scripts/make_fast_model.sh [DATA_ROOT (default ../shared/data)]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
bash scripts/train_sick_lungs.sh "$DATA" fast
mkdir -p runs/quality
if [ ! -f runs/quality/fast_q.pt ]; then
  python -m lungseg fit-quality --data "$DATA/montgomery" --data "$DATA/shenzhen" --data "$DATA/covid_gb" \
    --data "$DATA/covid_v7" --model runs/fast/best.pt -o runs/quality/fast_q.pt
fi
python scripts/package_weights.py runs/quality/fast_q.pt --name fast --note "runs/fast (scripts/train_sick_lungs.sh fast: \
resnet10-fast + SGA, decoder 96,48,32,16,8, 256 px, 30 epochs x 768 images from scratch, distilled from the shipped \
default weights, Shenzhen sampled twice as often); quality head: lungseg fit-quality on the four sets (scripts/make_fast_model.sh)"
python -m lungseg evaluate "$DATA/montgomery" "$DATA/shenzhen" "$DATA/covid_gb" "$DATA/covid_v7" --split test \
  --model fast --json runs/fast/eval_shipped.json
