#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
# The main job: set up (idempotent) and run the deploy graph on the simulated robot.
#   ./run.sh                         # sim + policy + mux (+ recorder), Ctrl-C to stop
#   ./run.sh task:=pick_place_can    # any `hapo deploy` override; ./run.sh --help lists them
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/setup.sh"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
cd "$root"
exec "$root/.venv/bin/hapo" deploy "$@"
