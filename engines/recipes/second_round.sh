#!/usr/bin/env bash
# The second round of the flywheel on the demo material, after engines/recipes/round_demo.sh:
#   frames the round-1 model finds hard (a score in the fallback's uncertainty band, from the
#   part of the clip before its held-out end) -> teacher labels -> dataset rebuilt into the
#   same folder (the gate set stays fixed) -> fine-tune the round-1 weights -> eval of the
#   demo model, round 1 and round 2 on the gate set -> gated signing against round 1.
#
#   engines/recipes/second_round.sh [WORKDIR]     # the WORKDIR of round_demo.sh
#
# The figures in engines/demo/README.md ("A second round") are from these steps.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${1:-/tmp/edge-round}"
R2="$WORK/round2"
cd "$REPO"
mkdir -p "$R2"

echo "== hard frames of the round-1 model (every 6th frame of 0..189)" >&2
python engines/recipes/hard_frames.py "$WORK/ft/model.onnx" engines/demo/clip.mp4 "$R2/hard" \
  --every 6 --last-frame 189

echo "== teacher labels of the hard frames" >&2
[[ -f "$R2/hard-ds/data.yaml" ]] || edge-agent label "$R2/hard" -o "$R2/hard-ds" \
  --classes person=person,car=car,truck=car,bus=car --conf 0.5 --val-fraction 0.2 --no-progress

echo "== base = round-1 labels + hard frames; rebuild (gate kept)" >&2
rm -rf "$R2/base" && mkdir -p "$R2/base"
cp -r "$WORK/labels/images" "$WORK/labels/labels" "$WORK/labels/data.yaml" "$R2/base/"
for split in train val; do
  cp "$R2/hard-ds/images/$split/"* "$R2/base/images/$split/"
  cp "$R2/hard-ds/labels/$split/"* "$R2/base/labels/$split/"
done
edge-gateway --config "$WORK/gateway/gateway.yaml" dataset build round2 --base "$R2/base" \
  --out "$WORK/dataset" --all

echo "== train from the round-1 weights" >&2
[[ -f "$R2/ft/model.onnx" ]] || edge-agent train "$WORK/dataset" --base "$WORK/ft/model.pt" \
  --out "$R2/ft" --epochs 2 --imgsz 320 --batch 16 --workers 0 --lr0 0.0002 --mosaic 0 \
  --warmup-epochs 0 --name demo-yolov8n --version 3

echo "== gate set: demo model, round 1, round 2" >&2
edge-agent eval engines/demo/model.onnx "$WORK/ft/model.onnx" "$R2/ft/model.onnx" \
  --data "$WORK/dataset" --split gate
edge-gateway models sign "$R2/ft/model.onnx" --release-key "$WORK/release.key" \
  --out "$R2/ft.signed.json" --name demo-yolov8n --version 3 \
  --gate-against "$WORK/ft.signed.json" --gate-against-model "$WORK/ft/model.onnx" \
  --gate-data "$WORK/dataset"
