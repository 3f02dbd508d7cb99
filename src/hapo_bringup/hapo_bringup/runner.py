# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Start a node graph as processes without ``ros2 launch`` (pip installs), and stop it cleanly.

Each node runs as ``python -m <package>.<executable> --ros-args -r __node:=<name> --params-file
<resolved yaml>``, in its own process group, its output prefixed with its name. Ctrl-C (or
SIGTERM, or one node dying) sends SIGINT to every node, waits ``grace_s``, then kills what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hapo_bringup.graph import NodeSpec


def node_command(spec: NodeSpec, params_file: Path) -> list[str]:
    """The command line that runs ``spec`` with its parameter file."""
    return [sys.executable, '-m', spec.module, '--ros-args', '-r', f'__node:={spec.name}',
            '--params-file', str(params_file)]


def write_params(params: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """A ROS 2 parameter file ``{node: {ros__parameters: ...}}``.

    Empty lists are left out: the rcl YAML parser cannot type them, and leaving them out means
    the declared default (also empty) applies.
    """
    doc = {name: {'ros__parameters': {k: v for k, v in values.items() if v != []}}
           for name, values in params.items()}
    path.write_text(yaml.safe_dump(doc, sort_keys=True))
    return path


def _pump(name: str, stream, out) -> None:
    for line in iter(stream.readline, b''):
        out.write(f'[{name}] {line.decode(errors="replace")}')
        out.flush()


class GraphRunner:
    """Owns the node processes of one graph run."""

    def __init__(self, nodes: Sequence[NodeSpec], params: Mapping[str, Mapping[str, Any]],
                 grace_s: float = 5.0, out=sys.stdout, env: Mapping[str, str] | None = None):
        self.nodes, self.params, self.grace_s, self.out = list(nodes), params, grace_s, out
        self.env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
        self.procs: dict[str, subprocess.Popen] = {}
        self._pumps: list[threading.Thread] = []
        self._tmp = tempfile.TemporaryDirectory(prefix='hapo-graph-')

    def start(self) -> None:
        write_params(self.params, Path(self._tmp.name) / 'params.yaml')
        for spec in self.nodes:
            self._spawn(spec)

    def _spawn(self, spec: NodeSpec) -> None:
        proc = subprocess.Popen(node_command(spec, Path(self._tmp.name) / 'params.yaml'), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[spec.name] = proc
        pump = threading.Thread(target=_pump, args=(spec.name, proc.stdout, self.out), daemon=True)
        pump.start()
        self._pumps.append(pump)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one node's process group (bench/faults.py: a node that crashes); waits for a SIGKILL."""
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait()

    def restart(self, name: str) -> None:
        """Start a node that exited again, with the same parameters (a supervisor's respawn)."""
        if self.procs[name].poll() is None:
            raise RuntimeError(f'{name} is still running')
        self._spawn(next(s for s in self.nodes if s.name == name))

    def exited(self) -> str | None:
        """None while every node runs, else which one exited and how."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return f'{name} exited with code {proc.returncode}'
        return None

    def wait(self, duration_s: float | None = None) -> int:
        """Block until a node exits, ``duration_s`` passes or SIGINT/SIGTERM; then stop all.

        Returns 0 for a requested stop, else the first non-zero exit code of a node.
        """
        stop = threading.Event()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        deadline = None if duration_s is None else time.monotonic() + duration_s
        code = 0
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                exited = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
                if exited:
                    name, rc = next(iter(exited.items()))
                    self.out.write(f'[hapo] {name} exited with code {rc}; stopping the graph\n')
                    code = rc
                    break
                stop.wait(0.1)
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return code

    def stop(self) -> dict[str, int]:
        """SIGINT every node, wait ``grace_s``, SIGKILL the rest; returns exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + self.grace_s
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out.write(f'[hapo] {name} did not stop within {self.grace_s} s: killed\n')
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pump in self._pumps:  # the nodes' last words (a traceback, a summary) before ours
            pump.join(timeout=2.0)
        self._tmp.cleanup()
        codes = {n: p.returncode for n, p in self.procs.items()}
        failed = {n: c for n, c in codes.items() if c}
        self.out.write(f'[hapo] stopped; non-zero exit codes: {failed}\n' if failed else '[hapo] stopped cleanly\n')
        return codes


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a graph's log file (for a one-line error's context)."""
    return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
