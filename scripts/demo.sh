#!/usr/bin/env bash
# The demo in one command: install the agent (CPU build) and run it on the bundled clip and
# model, printing detections as they arrive. Uses the broker in configs/agent.yaml when one
# answers; otherwise starts a local Mosquitto, or the embedded amqtt broker, for the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "installing edge-agent and its CPU dependencies (first run only takes a while)..."
# tracking: the demo config tracks objects and prints their events (the builtin tracker: scipy)
python3 -m pip install -q -e '.[cpu,demo,tracking]' 2>&1 | grep -v "Running pip as the 'root' user" || true
exec python3 -m agent demo "$@"
