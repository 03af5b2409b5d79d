#!/usr/bin/env bash
# One round of the flywheel on the demo material, with the commands of docs/flywheel.md:
#   label the demo clip with the teacher -> dataset build (gate set) -> fine-tune the demo
#   model's own weights -> eval on the gate set -> gated signing against the demo model.
#
#   pip install -e '.[cpu,gateway,teacher,train,eval]'   # plus CPU torch, see docs/flywheel.md
#   engines/recipes/round_demo.sh [WORKDIR]              # default WORKDIR=/tmp/edge-round
#
# The numbers in docs/flywheel.md ("A round on this machine") are from these steps.
# Nothing here touches engines/demo/; everything goes to WORKDIR.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${1:-/tmp/edge-round}"
EPOCHS="${EPOCHS:-2}"
mkdir -p "$WORK/gateway"
cd "$REPO"
printf 'data_dir: %s/gateway/data\nkeys_dir: %s/gateway/keys\n' "$WORK" "$WORK" \
  > "$WORK/gateway/gateway.yaml"

echo "== label (teacher)" >&2
[[ -f "$WORK/labels/data.yaml" ]] || edge-agent label engines/demo/clip.mp4 -o "$WORK/labels" \
  --classes person=person,car=car,truck=car,bus=car --conf 0.5 --every 4 --min-change 1.0 \
  --val-fraction 0.2 --gap 1.0 --no-progress

echo "== dataset build (12 images held out as the gate set)" >&2
[[ -f "$WORK/dataset/dataset.json" ]] || edge-gateway --config "$WORK/gateway/gateway.yaml" \
  dataset build demo --base "$WORK/labels" --grow-gate 12 --out "$WORK/dataset" --all

echo "== train (fine-tune engines/demo/model.pt)" >&2
[[ -f "$WORK/ft/model.onnx" ]] || edge-agent train "$WORK/dataset" --base engines/demo/model.pt \
  --out "$WORK/ft" --epochs "$EPOCHS" --imgsz 320 --batch 16 --workers 0 --lr0 0.0002 \
  --mosaic 0 --warmup-epochs 0 --name demo-yolov8n --version 2

echo "== eval on the gate set" >&2
edge-agent eval "$WORK/ft/model.onnx" engines/demo/model.onnx --data "$WORK/dataset" --split gate

echo "== gate and sign" >&2
[[ -f "$WORK/release.key" ]] || edge-gateway keys init --release-only --out "$WORK/release.key"
edge-gateway models sign "$WORK/ft/model.onnx" --release-key "$WORK/release.key" \
  --out "$WORK/ft.signed.json" --name demo-yolov8n --version 2 \
  --gate-against engines/demo/manifest.json --gate-data "$WORK/dataset"
