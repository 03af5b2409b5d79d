#!/usr/bin/env bash
# The one test command (README and .ci/run): install, start Mosquitto if needed, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e '.[cpu,dev,florence,teacher,gateway]' 2>&1 | grep -v "Running pip as the 'root' user" || true
if ! command -v mosquitto >/dev/null 2>&1; then
  echo "installing mosquitto (Debian package)"; apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients
fi
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "installing shellcheck (Debian package) for the install-script lint test"
  (apt-get update -qq && apt-get install -y -qq shellcheck) >/dev/null 2>&1 || echo "could not install shellcheck"
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "starting the shared Mosquitto on 127.0.0.1:1883"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
exec python3 -m pytest "$@"
