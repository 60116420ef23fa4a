#!/usr/bin/env bash
# The sick-lung training runs of docs/MODEL_CARD.md, in order, each resumable: run it again
# after a kill and every run continues from its last.pt (a finished run is skipped).
#   default2x : the shipped two-extent model (visible + full outputs), fine-tuned from the
#               one-extent TB weights on all four sets, each set a quarter of every epoch
#   default2x-ft2 : default2x continued for 6 epochs at a lower rate with Shenzhen drawn twice
#               as often (2/5 of each epoch, the other sets 1/5 each): the shipped weights
#   default3-swa : the shipped default weights continued for 12 epochs at lr 1e-4 with the TB
#               sets drawn twice as often (1/3 each, the sick-lung sets 1/6 each), the lr held
#               from epoch 5 and the weights of epochs 5-12 averaged (SWA, BatchNorm recomputed)
#   default4-swa : as default3-swa but 20 epochs, the weights of epochs 5-20 averaged; its
#               average.pt (not the val-best epoch) is the candidate, decided before training
#   default5-320 : as default3-swa but at 320 px (the network input side), seed 5, the weights
#               of epochs 4-12 averaged; its average.pt is the candidate, decided before training
#   default3-swa-ft : default3-swa's best.pt continued for 6 epochs at lr 5e-5, Shenzhen drawn 3/7
#               of each epoch (Montgomery 2/7, the sick-lung sets 1/7 each), epochs 2-6 averaged
#   fast      : the fast model (resnet10-fast encoder, narrow decoder, SGA, two outputs), from
#               scratch at 256 px, distilled from the shipped default weights (their probabilities
#               as soft targets beside the masks), Shenzhen drawn twice as often
#   abl-*     : from scratch at 128 px on the same mix, 8 epochs of 768 images: SGA vs no
#               attention (two outputs, 2 seeds each) and the naive baseline (SGA, one output,
#               both conventions merged into it)
# Usage: scripts/train_sick_lungs.sh [DATA_ROOT (default ../shared/data)] [RUN ... (default all)]
# Runs unchanged on CUDA (--device auto takes the GPU; --amp auto takes bf16 there too).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
shift || true
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(default2x default2x-ft2 abl-sga-s0 abl-none-s0 abl-merge-s0 abl-sga-s1 abl-none-s1 fast)
SETS=(--data "$DATA/montgomery" --data "$DATA/shenzhen" --data "$DATA/covid_gb" --data "$DATA/covid_v7")
FT=(--image-size 256 --epochs 14 --samples-per-epoch 768 --batch-size 8 --lr 3e-4 --seed 0
    --init runs/tb_visible.pt)
ABL=(--image-size 128 --epochs 8 --samples-per-epoch 768 --batch-size 8 --lr 1e-3)

from_git() {  # COMMIT OUT: the shipped default.pt of COMMIT into OUT (once; written atomically)
  [ -f "$2" ] && return
  mkdir -p "$(dirname "$2")"
  git show "$1:src/lungseg/weights/default.pt" > "$2.part"
  mv "$2.part" "$2"
}
# The one-extent TB model that lungseg 0.1 shipped (visible field only), and the two-extent
# default of lungseg 0.2 (default2x-ft2 with its fitted quality head: the init of the later runs
# and the teacher of the fast model), both taken from git history.
from_git f8637e7 runs/tb_visible.pt
from_git 33cd2a8 runs/default2.pt

run() {  # NAME ARGS...: train into runs/NAME (resuming), then evaluate its best.pt on every test split
  local name=$1; shift
  local out=runs/$name
  if [ ! -f "$out/done" ]; then
    local resume=()
    [ -f "$out/last.pt" ] && resume=(--resume)
    python -m lungseg train "${SETS[@]}" --out "$out" "$@" "${resume[@]}"
    touch "$out/done"
  fi
  if [ ! -f "$out/eval_visible.json" ]; then
    python -m lungseg evaluate "$DATA/montgomery" "$DATA/shenzhen" --split test --model "$out/best.pt" \
      --json "$out/eval_visible.json" > /dev/null
  fi
  if [ ! -f "$out/eval_full.json" ]; then
    python -m lungseg evaluate "$DATA/covid_gb" "$DATA/covid_v7" --split test --extent full \
      --model "$out/best.pt" --json "$out/eval_full.json" > /dev/null
  fi
}

for r in "${RUNS[@]}"; do
  case $r in
    default2x) run default2x "${FT[@]}" --extents visible,full ;;
    default2x-ft2) run default2x-ft2 --image-size 256 --epochs 6 --samples-per-epoch 768 --batch-size 8 \
        --lr 1e-4 --seed 1 --init runs/default2x/best.pt --extents visible,full --set-weight shenzhen=2 ;;
    default3-swa) run default3-swa --image-size 256 --epochs 12 --samples-per-epoch 768 --batch-size 8 \
        --lr 1e-4 --seed 2 --init runs/default2.pt --extents visible,full \
        --set-weight montgomery=2 --set-weight shenzhen=2 --average-from 5 ;;
    default4-swa) run default4-swa --image-size 256 --epochs 20 --samples-per-epoch 768 --batch-size 8 \
        --lr 1e-4 --seed 4 --init runs/default2.pt --extents visible,full \
        --set-weight montgomery=2 --set-weight shenzhen=2 --average-from 5 ;;
    default5-320) run default5-320 --image-size 320 --epochs 12 --samples-per-epoch 768 --batch-size 8 \
        --lr 1e-4 --seed 5 --init runs/default2.pt --extents visible,full \
        --set-weight montgomery=2 --set-weight shenzhen=2 --average-from 4 ;;
    default3-swa-ft) run default3-swa-ft --image-size 256 --epochs 6 --samples-per-epoch 768 --batch-size 8 \
        --lr 5e-5 --seed 3 --init runs/default3-swa/best.pt --extents visible,full \
        --set-weight montgomery=2 --set-weight shenzhen=3 --average-from 2 ;;
    fast) run fast --image-size 256 --epochs 30 --samples-per-epoch 768 --batch-size 8 --lr 2e-3 --seed 0 \
        --encoder resnet10-fast --decoder-channels 96,48,32,16,8 --extents visible,full \
        --teacher runs/default2.pt --distill-weight 1 --set-weight shenzhen=2 ;;
    abl-merge-s*) run "$r" "${ABL[@]}" --attention sga --extents visible --seed "${r##*-s}" ;;
    abl-sga-s*) run "$r" "${ABL[@]}" --attention sga --seed "${r##*-s}" ;;
    abl-none-s*) run "$r" "${ABL[@]}" --attention none --seed "${r##*-s}" ;;
    *) echo "unknown run $r" >&2; exit 2 ;;
  esac
done
