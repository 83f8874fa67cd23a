#!/usr/bin/env bash
# Set up everything this project needs on a Debian 12 machine, then run one job:
#   bash tools/setup.sh demo   # a simulated call through the whole pipeline (default)
#   bash tools/setup.sh test   # the test suite
#   bash tools/setup.sh none   # set up only
# Run as root (it installs Debian packages), or as a user with the packages already installed.
# Idempotent: a second run skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:-demo}"; shift || true
case "$action" in demo|test|none) ;; *) echo "usage: $0 [demo|test|none] [args...]" >&2; exit 2 ;; esac

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc pkg-config    # Python and the Cython build
  libspeexdsp-dev                                    # resampler, echo canceller, jitter buffer
  espeak-ng sox libsox-fmt-all                       # speech and audio tools (corpora, WAV conversion)
  libportaudio2                                      # sounddevice (GSM USB audio, headset lines)
  mosquitto mosquitto-clients                        # MQTT broker for the fleet tests
  baresip-core kamailio sipsak                       # real SIP peers for the interop tests
  iaxmodem socat openssl                             # modem tests, ptys, TLS test certificates
)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "these Debian packages are missing: ${missing[*]}; run this script as root (or apt-get install them)" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # the packaged services are not needed as system daemons: tests start their own on free ports
  for svc in mosquitto kamailio; do systemctl disable --now "$svc" >/dev/null 2>&1 || true; done
fi

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "Python 3.11 or newer is needed; found $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] \
   || [ -n "$(find native -name '*.pyx' -newer "$stamp" 2>/dev/null)" ]; then
  say "installing Python packages and compiling the Cython core (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev,audio]'   # the editable build compiles native/ in place
  # The semantic end-of-turn model (smart-turn v3.2, BSD-2-Clause) ships inside pipecat-ai's wheel;
  # only the file is used, so none of pipecat's own dependencies are installed.
  .venv/bin/python -m pip install -q --no-deps 'pipecat-ai==1.14.0'
  .venv/bin/python -c 'import appliance.audio as a, sys; sys.exit(a.IMPLEMENTATION != "compiled" and a.NATIVE_IMPORT_ERROR)'
  touch "$stamp"
fi

# Speech models: the packaged ones verify in place; others come from a local mirror when one is beside the
# repo (../shared/models, as on CI and fleet build hosts), otherwise from their release URL.
if .venv/bin/python -c 'import appliance.speech.models_cli' 2>/dev/null; then
  say "checking speech models"
  .venv/bin/appliance models fetch --defaults || {
    echo "speech models could not be installed: see the message above (appliance models --help)" >&2; exit 1; }
fi

case "$action" in
  demo) say "running a simulated call (appliance demo)"; exec .venv/bin/appliance demo "$@" ;;
  test) say "running the tests"; exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@" ;;
  none) say "set up; run .venv/bin/appliance --help" ;;
esac
