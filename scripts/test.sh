#!/usr/bin/env bash
# README command B: set everything up, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VSMSVSR_VENV:-.venv}/bin/python" -m pytest -q "$@"
