# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Test helpers usable without pytest fixtures: wait_for, unique domain ids, node processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def wait_for(cond: Callable[[], bool], timeout_s: float, poll_s: float = 0.02, what: str = 'condition') -> None:
    """Poll ``cond`` until it is true; raise AssertionError after ``timeout_s`` (monotonic clock)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll_s)
    if cond():
        return
    raise AssertionError(f'timed out after {timeout_s:.1f} s waiting for {what}')


def unique_domain_id() -> int:
    """A ROS_DOMAIN_ID no other test, bench or tool of this machine holds (locked for this process)."""
    from hapo_ros.background import reserve_domain_id

    return reserve_domain_id()


def _param_arg(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, list | tuple):
        return '[' + ','.join(_param_arg(v) if not isinstance(v, str) else f"'{v}'" for v in value) + ']'
    return str(value)


class NodeProcess:
    """A node run as ``sys.executable -m module --ros-args`` (or ``command --ros-args``) in its own process group."""

    def __init__(self, module: str, ros_args: list[str], params: dict, log_dir: Path,
                 name: str | None = None, env: dict | None = None, command: list[str] | None = None):
        self.module = module
        self.name = name or module.rsplit('.', 1)[-1]
        self.log_path = Path(log_dir) / f'{self.name}.log'
        args = [*(command or [sys.executable, '-m', module]), '--ros-args', *ros_args]
        for k, v in params.items():
            args += ['-p', f'{k}:={_param_arg(v)}']
        full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
        self._log = open(self.log_path, 'wb')  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                     start_new_session=True)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors='replace')

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int = signal.SIGINT) -> None:
        if self.running():
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGINT, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.running():
            self.signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


class RosProbe:
    """A test-side rclpy node in its own Context, spun in a background thread (``hapo_ros.background``).

    ``with RosProbe(domain) as probe: probe.node.create_subscription(...)``; callbacks run on the
    spin thread, so keep what they store in lists (append is atomic).
    """

    def __init__(self, domain_id: int, name: str = 'test_probe'):
        self.domain_id, self.name = domain_id, name

    def __enter__(self) -> RosProbe:
        from hapo_ros.background import BackgroundNode

        self._bg = BackgroundNode(self.name, self.domain_id)
        self.node, self.context = self._bg.node, self._bg.context
        return self

    def collect(self, msg_type, topic: str, qos=10) -> list:
        """Subscribe and return the list every received message is appended to."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def close(self) -> None:
        self._bg.close()

    def __exit__(self, *exc) -> None:
        self._bg.close()
