# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The ``main()`` every node shares: init, spin, clean exit on SIGINT/SIGTERM, one-line config errors.

rclpy's own SIGINT handler shuts the context down before our ``finally`` runs, so a node could
not send its last hold command; we take SIGINT and SIGTERM ourselves and raise KeyboardInterrupt,
leaving the context valid for ``on_exit``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from hapo_interfaces.params import ParamError


class NodeStartError(RuntimeError):
    """A node cannot start (bad checkpoint, bad config); the text is the one-line reason."""


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def run_node(factory: Callable[[], Any], name: str, args: list[str] | None = None,
             threads: int = 1) -> int:
    """Build the node with ``factory`` and spin it; return the process exit code.

    0 on SIGINT/SIGTERM, 2 with a one-line ``name: reason`` on ParamError/NodeStartError. If the
    node has ``on_exit()`` it runs while the context is still valid (e.g. a final hold command).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node = None
    code = 0
    try:
        node = factory()
        executor = MultiThreadedExecutor(threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (ParamError, NodeStartError) as exc:
        print(f'{name}: {exc}', file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            if hasattr(node, 'on_exit') and rclpy.ok():
                node.on_exit()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
