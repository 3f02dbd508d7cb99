#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
# The test command: set up (idempotent), lint, then unit, io, train and graph tests.
#   ./test.sh                 # everything (~10 min on 2 cores)
#   ./test.sh tests/unit -k mux   # any pytest arguments
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/setup.sh"
export MUJOCO_GL="${MUJOCO_GL:-egl}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$root"
echo "[test] ruff"
.venv/bin/ruff check src tests bench launch
echo "[test] pytest"
exec .venv/bin/pytest -p no:cacheprovider "${@:-tests}"
