#!/usr/bin/env bash
# Install the `trackers` extra of pyproject.toml (the alternative tracker's packages; the
# default builtin tracker needs only the `tracking` extra, scipy) without the dependencies its
# metadata declares: opencv-python (non-headless) and numpy>=2 would shadow the headless or
# JetPack OpenCV and replace JetPack's numpy 1.x. Everything it imports is already installed.
set -euo pipefail
if ! python3 -c "import trackers, supervision" >/dev/null 2>&1; then
  python3 -m pip install -q --no-deps trackers==2.6.1 supervision==0.31.2 \
    'pydeprecate>=0.9,<0.14' 'defusedxml>=0.7.1' 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
