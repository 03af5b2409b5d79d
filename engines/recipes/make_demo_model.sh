#!/usr/bin/env bash
# Rebuild engines/demo/ (clip.mp4, model.onnx, manifest.json) from public inputs, one command:
#
#   pip install -e '.[cpu,teacher,train]'   # plus: pip install torch==2.14.1 torchvision==0.29.1
#   engines/recipes/make_demo_model.sh [WORKDIR]          # default WORKDIR=/tmp/edge-demo
#
# Steps (each resumable: re-running skips what is done):
#   1. vtest.avi from Debian's opencv-doc 4.6.0+dfsg-12 (apt-get download + dpkg -x, no root)
#   2. clip.mp4: its first 25 s re-encoded to H.264 (needs ffmpeg with libx264)
#   3. edge-agent label: SSD-MobileNet-v2 teacher labels every 4th frame -> YOLO dataset
#   4. train_demo.py: yolov8n from yaml, 30 epochs, imgsz 320, CPU; ONNX export; manifest;
#      mAP50 of the ONNX vs the teacher's labels on the time-split val frames
#   4b. dynamic_batch.py: a dynamic-batch copy of model.onnx (+ manifest) in WORKDIR, for
#      batch.max > 1 (not committed: 12 MB, remade from model.onnx in a second)
#   5. bench_teacher_vs_student.py: ms/frame of teacher and student side by side
# Ultralytics run artefacts stay in WORKDIR/runs (outside the repo).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${1:-/tmp/edge-demo}"
DEB_VERSION="4.6.0+dfsg-12"
VTEST_SHA256="45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
EPOCHS="${EPOCHS:-30}"
mkdir -p "$WORK"
cd "$WORK"

VIDEO="$WORK/opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi"
if [[ ! -f "$VIDEO" ]]; then
  echo "== 1. fetching opencv-doc $DEB_VERSION" >&2
  apt-get download "opencv-doc=$DEB_VERSION"
  dpkg -x "opencv-doc_${DEB_VERSION}_all.deb" "$WORK/opencv-doc"
fi
echo "$VTEST_SHA256  $VIDEO" | sha256sum --check --quiet -

if [[ ! -f "$REPO/engines/demo/clip.mp4" ]]; then
  echo "== 2. clip.mp4 (first 25 s, H.264 CRF 26)" >&2
  ffmpeg -y -loglevel error -i "$VIDEO" -t 25 -c:v libx264 -preset slow -crf 26 \
    -pix_fmt yuv420p -movflags +faststart -an "$REPO/engines/demo/clip.mp4"
fi

echo "== 3. labelling with the teacher" >&2
LABEL_ARGS=(--classes person=person,car=car,truck=car,bus=car --conf 0.5 --every 4
            --min-change 1.0 --val-fraction 0.2 --gap 1.0)
if [[ -f "$WORK/dataset/edge-label.json" ]]; then LABEL_ARGS+=(--resume); fi
edge-agent label "$VIDEO" -o "$WORK/dataset" "${LABEL_ARGS[@]}"

echo "== 4. training, export, evaluation" >&2
python "$REPO/engines/recipes/train_demo.py" --data "$WORK/dataset/data.yaml" \
  --runs "$WORK/runs" --out "$REPO/engines/demo" --epochs "$EPOCHS" --imgsz 320 --batch 16 \
  --workers 1 --model-version 1

echo "== 4b. dynamic-batch copy (batching across cameras)" >&2
python "$REPO/engines/recipes/dynamic_batch.py" "$REPO/engines/demo/model.onnx" \
  "$WORK/model-dynamic.onnx" --manifest "$REPO/engines/demo/manifest.json"

echo "== 5. teacher vs student speed" >&2
python "$REPO/bench/bench_teacher_vs_student.py" --frames 60 | tee "$WORK/bench.json"
