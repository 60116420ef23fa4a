#!/usr/bin/env bash
# Make a trained checkpoint the shipped default weights and score them as docs/MODEL_CARD.md and
# docs/QUALITY.md report them: fit the quality head (view check + Dice estimate), write
# src/lungseg/weights/default.pt (fp16) and default.json, then evaluate the packaged weights on
# every test split (the card's tables, the quality figures and per-image CSVs under runs/card/).
# Usage: scripts/ship_default.sh CHECKPOINT [DATA_ROOT (default ../shared/data)] [NOTE]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$1
DATA=${2:-../shared/data}
NOTE=${3:-"$CKPT; scripts/train_sick_lungs.sh"}
SETS=(--data "$DATA/montgomery" --data "$DATA/shenzhen" --data "$DATA/covid_gb" --data "$DATA/covid_v7")
mkdir -p runs/quality runs/card
name=$(basename "$(dirname "$CKPT")")
python -m lungseg fit-quality "${SETS[@]}" --model "$CKPT" -o "runs/quality/${name}_q.pt"
python scripts/package_weights.py "runs/quality/${name}_q.pt" --name default \
  --note "$NOTE; quality head: lungseg fit-quality (four sets) --model $CKPT"
W=src/lungseg/weights/default.pt
python -m lungseg evaluate "$DATA/montgomery" "$DATA/shenzhen" --split test --model "$W" \
  --json runs/card/vis.json --out runs/card/vis
python -m lungseg evaluate "$DATA/covid_gb" "$DATA/covid_v7" --split test --extent full --model "$W" \
  --json runs/card/full.json --out runs/card/full
python -m lungseg evaluate "$DATA/montgomery" "$DATA/shenzhen" "$DATA/covid_gb" "$DATA/covid_v7" --split test \
  --model "$W" --json runs/card/quality.json
python scripts/card_tables.py sets runs/card/vis.json runs/card/full.json
