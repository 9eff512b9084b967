#!/usr/bin/env bash
# README command A: set everything up, then run the main job on a real clip (cityCC0.mpg, CC0).
# Today the filters are not written yet, so the job stops after showing the clip through vspipe and
# the state of the weight cache; the enhance step arrives with the vsmsvsr-enhance command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${VSMSVSR_VENV:-.venv}"
"$venv/bin/vspipe" --info scripts/demo.vpy >&2
"$venv/bin/python" -m vsmsvsr weights list
