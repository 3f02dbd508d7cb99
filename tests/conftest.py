# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Shared fixtures: an isolated ROS_DOMAIN_ID per test, deadline-bounded waits, node processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import NodeProcess, unique_domain_id  # noqa: E402


@pytest.fixture
def ros_domain(monkeypatch):
    """A ROS_DOMAIN_ID no other test (or concurrent run) of this machine uses; set for this test."""
    domain = unique_domain_id()
    monkeypatch.setenv('ROS_DOMAIN_ID', str(domain))
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    return domain


@pytest.fixture
def start_node(ros_domain, tmp_path):
    """Start ``python -m module --ros-args ...`` processes; all are stopped (SIGINT, then kill) at teardown."""
    procs: list[NodeProcess] = []

    def _start(module: str, *ros_args: str, params: dict | None = None, name: str | None = None) -> NodeProcess:
        proc = NodeProcess(module, list(ros_args), params or {}, log_dir=tmp_path, name=name,
                           env={'ROS_DOMAIN_ID': str(ros_domain)})
        procs.append(proc)
        return proc

    yield _start
    for p in procs:
        p.stop()


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


os.environ.setdefault('MUJOCO_GL', 'egl')
