# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``run_node``, the ``main()`` every node shares: init, spin, clean exit on SIGINT/SIGTERM, one-line start errors.

SIGINT/SIGTERM only set a flag; the spin loop sees it between callbacks. Raising KeyboardInterrupt
from the handler (Python's and rclpy's default) lands inside whatever runs at that moment: in
robosuite's numba code it became a SystemError and exit code 1, and rclpy's own handler shuts the
context down before a node can send its last hold command. Here a callback always completes, then
``on_exit()`` runs while the context is still valid, then the node is destroyed.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from hapo_interfaces.params import ParamError


class NodeStartError(RuntimeError):
    """A node cannot start (bad checkpoint, bad config); the text is the one-line reason."""


def run_node(factory: Callable[[], Any], name: str, args: list[str] | None = None, threads: int = 1,
             start_errors: tuple[type[Exception], ...] = ()) -> int:
    """Build the node with ``factory`` and spin it until SIGINT/SIGTERM; return the exit code.

    0 on a requested stop; 2 with a one-line ``name: reason`` on stderr when the factory raises
    ParamError, NodeStartError or one of ``start_errors``. A node's ``on_exit()`` (e.g. a final
    hold command, closing a bag) runs before ``destroy_node``, also after an external shutdown. A node with
    ``drain_s`` keeps taking messages that long after the stop, before ``on_exit()``.
    """
    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = None
    try:
        node = factory()
        executor = MultiThreadedExecutor(threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
        deadline = time.monotonic() + getattr(node, 'drain_s', 0.0)
        while time.monotonic() < deadline and rclpy.ok():  # take what already arrived (a recorder loses nothing)
            executor.spin_once(timeout_sec=0.01)
    except (ParamError, NodeStartError, *start_errors) as exc:
        print(f'{name}: {exc}', file=sys.stderr, flush=True)
        return 2
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            if hasattr(node, 'on_exit'):
                node.on_exit()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
