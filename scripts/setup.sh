#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
# Idempotent set-up of a fresh Debian 12 / Python 3.11 machine without ROS:
#   Debian GL libraries for offscreen MuJoCo rendering, a virtual environment in .venv with the
#   pinned packages (constraints.txt: ROS 2 Kilted wheels, torch 2.13.0 CPU, robosuite 1.5.2,
#   mujoco 3.3.7, numpy < 2, colcon), and the workspace packages installed editable (only `hapo` on PATH).
# A second run checks a stamp (hash of the inputs) and returns in well under a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HAPO_VENV:-$root/.venv}"
python="${HAPO_PYTHON:-python3}"

apt_pkgs=(libosmesa6 libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libglib2.0-0 tmux)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp_inputs=("$root/requirements.txt" "$root/constraints.txt" "$root"/src/*/setup.py "$root"/src/*/setup.cfg)
stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$venv/.hapo-stamp" ] && [ "$(cat "$venv/.hapo-stamp")" = "$stamp" ]; then
  exit 0
fi

"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "[setup] error: Python 3.11 required, $("$python" --version) found (set HAPO_PYTHON)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || { echo "[setup] creating $venv"; "$python" -m venv "$venv"; }
echo "[setup] installing pinned Python packages (first run: ~2 min)"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements.txt" -c "$root/constraints.txt" 2> >(grep -v "is ignored: it is neither" >&2)
# Only `hapo` goes on PATH: the packages declare their ROS executables only when colcon runs them (COLCON=1, unset
# here). Reinstalling a package removes the console scripts its previous install put in .venv/bin.
env -u COLCON "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation \
  $(printf -- '-e %s ' "$root"/src/*/)
echo "$stamp" > "$venv/.hapo-stamp"
echo "[setup] ready: $venv"
