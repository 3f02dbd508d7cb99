#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
# The main job: set up (idempotent) and run `hapo demo`: the shipped Lift base, one deployment round on lift_far
# with the simulated operator taking over, optimize, and the policy before/after on the same evaluation seeds.
#   ./run.sh                         # ~10 min on 2 cores after set-up; a second run reuses what it built
#   ./run.sh --from-scratch          # also collect the demos and train the base (~25 min more)
#   ./run.sh --train-seed 1          # optimize with another training seed (runs/demo-train-seed1): one seed is one draw
#   ./run.sh --help                  # every option (hapo demo --help)
# Driving with a real gamepad: .venv/bin/hapo deploy (see the README).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/setup.sh"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
cd "$root"
exec "$root/.venv/bin/hapo" demo "$@"
