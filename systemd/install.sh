#!/usr/bin/env bash
# Install (or remove) the edge-agent service on a Jetson, or the edge-gateway service on a Pi 5.
#
#   sudo systemd/install.sh agent             # Jetson: user, dirs, unit, example config, enable
#   sudo systemd/install.sh gateway           # Raspberry Pi 5 gateway
#   sudo systemd/install.sh --uninstall agent [--purge]
#
# Options:
#   --root DIR      install into DIR instead of / (also: DESTDIR=DIR); systemctl and
#                   systemd-sysusers then work offline on DIR and nothing on this machine changes
#   --dry-run       print every action, change nothing, call nothing
#   --config FILE   example config to install (default: systemd/examples/<agent|gateway>.yaml)
#   --no-start      enable the unit but do not start it now
#   --uninstall     disable and remove the unit (config and state are kept)
#   --purge         with --uninstall: also delete /etc/<name> and /var/lib/<name> (engines, outbox!)
#
# The Python package must be installed first so that /usr/local/bin/edge-agent (or
# edge-gateway) exists. On a Jetson: Ubuntu's python3-opencv and python3-numpy, pycuda and
# cuda-python first, then `sudo pip3 install '.[jetson]'`, which keeps that cv2 and numpy 1.x
# (never '.[cpu]' there: a pip OpenCV has no GStreamer). Steps in docs/jetson.md section 1.
# The service user is never deleted (its UID may still own files).
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: error: $*" >&2; exit 1; }
note() { echo "install.sh: $*"; }

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
ROOT="${DESTDIR:-/}"
DRY_RUN=0
UNINSTALL=0
PURGE=0
START=1
CONFIG=""
COMPONENT=""

while [ $# -gt 0 ]; do
  case "$1" in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT="$2"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --config) [ $# -ge 2 ] || die "--config needs a file"; CONFIG="$2"; shift 2 ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    agent|gateway) [ -z "$COMPONENT" ] || die "give one component"; COMPONENT="$1"; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$COMPONENT" ] || { usage >&2; die "say which service: agent (Jetson) or gateway (Pi 5)"; }
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge only goes with --uninstall"
[ -d "$ROOT" ] || die "--root $ROOT: not a directory"
ROOT="$(cd "$ROOT" && pwd)"
[ "$ROOT" = "/" ] && P="" || P="$ROOT"   # path prefix

case "$COMPONENT" in
  agent) NAME=edge-agent; CONF_NAME=agent.yaml ;;
  gateway) NAME=edge-gateway; CONF_NAME=gateway.yaml ;;
esac
UNIT_SRC="$HERE/$NAME.service"
SYSUSERS_SRC="$HERE/sysusers.d/$NAME.conf"
CONFIG="${CONFIG:-$HERE/examples/$COMPONENT.yaml}"
BIN="/usr/local/bin/$NAME"
UNIT_DST="$P/etc/systemd/system/$NAME.service"
SYSUSERS_DST="$P/etc/sysusers.d/$NAME.conf"
CONF_DIR="$P/etc/$NAME"
STATE_DIR="$P/var/lib/$NAME"
DOC_DST="$P/usr/local/share/doc/edge-agent/jetson.md"
MODELS_DST="$P/usr/local/share/edge-agent/models/demo"

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "would run: $*"; else echo "+ $*"; "$@"; fi
}

systemd_running() { [ "$ROOT" = "/" ] && [ -d /run/systemd/system ]; }

systemctl_() {
  if systemd_running; then run systemctl "$@"; else run systemctl --root="$ROOT" "$@"; fi
}

# uid/gid of the service user inside ROOT (empty when it does not exist yet)
user_ids() {
  awk -F: -v u="$NAME" '$1 == u { print $3 ":" $4 }' "$P/etc/passwd" 2>/dev/null || true
}

do_install() {
  for f in "$UNIT_SRC" "$SYSUSERS_SRC" "$CONFIG"; do [ -f "$f" ] || die "missing $f"; done
  if [ ! -x "$P$BIN" ]; then
    die "$P$BIN not found: install the Python package first (on a Jetson: docs/jetson.md section 1, ending in sudo pip3 install '.[jetson]'; on the gateway: sudo pip3 install '.[gateway]'), or link $BIN to it"
  fi
  command -v systemd-sysusers >/dev/null || die "systemd-sysusers not found (apt-get install systemd)"
  command -v systemctl >/dev/null || die "systemctl not found (apt-get install systemd)"

  run install -D -m 0644 "$SYSUSERS_SRC" "$SYSUSERS_DST"
  if [ "$ROOT" = "/" ]; then run systemd-sysusers "$SYSUSERS_DST"
  else run mkdir -p "$P/etc"; run systemd-sysusers --root="$ROOT" "$SYSUSERS_DST"; fi

  local ids owner=()
  ids="$(user_ids)"
  if [ "$DRY_RUN" = 1 ]; then
    owner=(-o "$NAME" -g "$NAME")
  elif [ -z "$ids" ]; then
    die "user $NAME was not created in $ROOT/etc/passwd"
  elif [ "$(id -u)" = 0 ]; then
    owner=(-o "${ids%%:*}" -g "${ids##*:}")
  else
    note "not root: $STATE_DIR stays owned by $(id -un) (run as root for a real install)"
  fi
  run install -d -m 0755 "$CONF_DIR"
  run install -d -m 0750 "${owner[@]}" "$STATE_DIR"
  if [ -e "$CONF_DIR/$CONF_NAME" ]; then
    note "keeping existing $CONF_DIR/$CONF_NAME; the example is at $CONF_DIR/$CONF_NAME.example"
  else
    run install -m 0644 "$CONFIG" "$CONF_DIR/$CONF_NAME"
  fi
  run install -m 0644 "$CONFIG" "$CONF_DIR/$CONF_NAME.example"
  if [ "$COMPONENT" = agent ] && [ -f "$REPO/engines/demo/model.onnx" ]; then
    run install -D -m 0644 "$REPO/engines/demo/model.onnx" "$MODELS_DST/model.onnx"
    run install -D -m 0644 "$REPO/engines/demo/manifest.json" "$MODELS_DST/manifest.json"
  fi
  if [ -f "$REPO/docs/jetson.md" ]; then run install -D -m 0644 "$REPO/docs/jetson.md" "$DOC_DST"; fi
  run install -D -m 0644 "$UNIT_SRC" "$UNIT_DST"

  if systemd_running; then
    run systemctl daemon-reload
    if [ "$START" = 1 ]; then run systemctl enable --now "$NAME.service"
    else run systemctl enable "$NAME.service"; fi
  else
    systemctl_ enable "$NAME.service"
    note "systemd is not running for $ROOT: $NAME enabled offline; it starts on the next boot"
  fi
  note "installed $NAME. Edit $CONF_DIR/$CONF_NAME, then: $NAME check-config / journalctl -u $NAME -f"
}

do_uninstall() {
  if [ -e "$UNIT_DST" ]; then
    if systemd_running; then run systemctl disable --now "$NAME.service"
    else systemctl_ disable "$NAME.service"; fi
    run rm -f "$UNIT_DST"
  else
    note "$UNIT_DST not installed"
  fi
  run rm -f "$SYSUSERS_DST"
  if [ "$COMPONENT" = agent ]; then run rm -rf "$MODELS_DST"; fi
  if systemd_running; then run systemctl daemon-reload; fi
  if [ "$PURGE" = 1 ]; then
    run rm -rf "$CONF_DIR" "$STATE_DIR"
    note "purged $CONF_DIR and $STATE_DIR; user $NAME kept"
  else
    note "kept $CONF_DIR and $STATE_DIR and user $NAME (--purge deletes the directories)"
  fi
}

if [ "$UNINSTALL" = 1 ]; then do_uninstall; else do_install; fi
