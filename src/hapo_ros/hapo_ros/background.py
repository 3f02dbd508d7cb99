# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""A node inside a tool (live replay, closed-loop evaluation, tests): its own Context, spun on a thread.

    with BackgroundNode('hapo_evaluate', domain_id=17) as bg:
        bg.node.create_subscription(...)   # callbacks run on the spin thread

``reserve_domain_id()`` gives a process a ROS_DOMAIN_ID in 1..100 that no other process of this machine
holds (a file lock kept for the life of the process), so tools and test runs never hear each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

LOCK_DIR = Path(os.environ.get('HAPO_DOMAIN_LOCK_DIR', '/tmp/hapo-ros-domains'))
_held_locks: list = []


def reserve_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..100 locked for the life of this process; RuntimeError when all are taken."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    start = (os.getpid() * 7) % 100
    for i in range(100):
        domain = 1 + (start + i) % 100
        f = open(LOCK_DIR / f'{domain}.lock', 'w')  # noqa: SIM115 (held open on purpose)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        _held_locks.append(f)
        return domain
    raise RuntimeError(f'no free ROS_DOMAIN_ID in 1..100 (locks in {LOCK_DIR})')


class BackgroundNode:
    """``node`` in a Context of its own (``domain_id``, default ROS_DOMAIN_ID), spun until ``close()``."""

    def __init__(self, name: str, domain_id: int | None = None):
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException):
            self.executor.spin()

    def close(self) -> None:
        """Stop the spin thread before destroying what it uses: a thread still inside rclpy when the interpreter
        exits aborts the process ('terminate called without an active exception', exit -6; seen under load)."""
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> BackgroundNode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
