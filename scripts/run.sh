#!/usr/bin/env bash
# README command A: set everything up, then run the main job on a real clip: ×4 PP-MSVSR on
# cityCC0.mpg (CC0), piped by vspipe into x264 -> out/cityCC0_x4.mkv.
# The official weights are fetched first; without network access this stops with the weights
# subsystem's message (URL and where to place the file) and a non-zero exit — never a fake result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${VSMSVSR_VENV:-.venv}"
"$venv/bin/python" -m vsmsvsr weights download PP-MSVSR
mkdir -p out
"$venv/bin/vspipe" --info scripts/demo.vpy >&2
"$venv/bin/vspipe" -c y4m -p scripts/demo.vpy - | x264 --demuxer y4m --crf 16 --preset medium -o out/cityCC0_x4.mkv.part -
mv out/cityCC0_x4.mkv.part out/cityCC0_x4.mkv
echo "wrote out/cityCC0_x4.mkv" >&2
