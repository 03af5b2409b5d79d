#!/usr/bin/env bash
# The one test command (README and .ci/run): install, start the services, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python3 -c "import torch" >/dev/null 2>&1; then
  # The Florence-2 tests need torch. A pinned release, because a plain `torch` pulls an
  # unpinned multi-GB CUDA build (this release lies on the project's machines' disk).
  python3 -m pip install -q torch==2.14.1
fi
# train (Ultralytics, AGPL-3.0) and eval (pycocotools): the flywheel proof trains and gates a model
python3 -m pip install -q -e '.[cpu,dev,florence,teacher,gateway,eval,train,tracking]'
scripts/install-tracking.sh  # the `trackers` extra (the adapter), without its opencv-python/numpy>=2
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing $*: install it (Debian: apt-get install $*)" >&2; return 1
  fi
}
command -v mosquitto >/dev/null 2>&1 || apt_install mosquitto mosquitto-clients
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
# The camera tests' real RTSP server (tests/helpers/rtsp.py): GStreamer under Debian's python3.
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" >/dev/null 2>&1 ||
  apt_install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-bad
command -v chromium >/dev/null 2>&1 || apt_install chromium chromium-driver  # the web page's browser tests
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "starting the shared Mosquitto on 127.0.0.1:1883"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
exec python3 -m pytest "$@"
