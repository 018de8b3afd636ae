#!/usr/bin/env bash
# Install lmdm and everything it uses, on a fresh machine. `--test` adds the test tools.
#   bash scripts/setup.sh          # the package, its extras, the pinned CPU torch
#   bash scripts/setup.sh --test   # + pytest, hypothesis, playwright, Debian chromium for the browser test
# torch is installed first and pinned: an unpinned `torch` would pull gigabytes of CUDA wheels.
# tinysoundfont is installed without dependencies: it declares pyaudio, which lmdm does not use
# (it renders offline) and which does not build without PortAudio headers.
# musicnn (the source of the judge's converted tagger weights, for scripts/convert_musicnn.py) and
# basic-pitch (the judge's transcriber: its bundled ONNX model runs with onnxruntime) are installed
# without dependencies too: both declare TensorFlow, which lmdm does not use (musicnn also numpy<1.17).
# The Debian sample packages are the recorded instruments of the v2 corpus (`lmdm data synth`,
# docs/corpus.md); their SF3 soundfont is decoded once to an SF2 in ~/.cache/lmdm at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="all"
apt_packages="fluidsynth fluid-soundfont-gm musescore-general-soundfont hydrogen-drumkits avldrums.lv2-soundfont
  sonic-pi-samples"
if [ "${1:-}" = "--test" ]; then
  extras="all,test"
  apt_packages="$apt_packages chromium chromium-driver"
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=$(for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  echo "setup: not root; skipping Debian packages ($apt_packages) — install them yourself if you need them" >&2
fi
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q --no-deps tinysoundfont==0.3.7
python3 -m pip install -q -e ".[$extras]"
python3 -m pip install -q --no-deps musicnn==0.1.0 basic-pitch==0.4.0
# Decode MuseScore General's Ogg samples once (~1 min), so the first `lmdm data synth` starts at once.
python3 - <<'PY' || echo "setup: could not prepare the v2 corpus soundfont (lmdm data synth will try again)" >&2
from lmdm.data.synth.v2.instruments import available, SOURCES
from lmdm.data.synth.v2.soundfont import playable
if available("musescore"):
    print("setup: soundfont ready:", playable(SOURCES["musescore"].path()))
PY
