# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""EpisodeWriter: one rosbag2 (MCAP) bag directory per episode, written with ``rosbags`` (no ROS needed).

Bag layout (``SCHEMA_VERSION`` 1)::

    <root>/<YYYYmmdd-HHMMSS>_ep<NNNN>_<task>/
        metadata.yaml            written at close only (custom_data: outcome, task, instruction, k, label counts,
                                 interventions, per-topic received/written/dropped, policy_id, versions,
                                 payload_crc32: CRC-32 over every message payload in file order ...)
        <dirname>.mcap           the recorded topics under their absolute names, plus two tag topics:
          /hapo/tags/episode_info  std_msgs/String JSON, first message: task, instruction, k, demo, topics, ...
                                   (lets a reader rebuild the metadata of a bag cut by a crash)
          /hapo/tags/labels        std_msgs/String JSON, last message: per-step stamps, sources, labels
                                   (``relabel(sources, k, demo)``), intervention spans and relabel windows

A crash loses at most what is still in the writer's pending chunk: ``maybe_flush`` closes the chunk when it
reaches ``chunk_size_bytes`` or every ``flush_period_ns``, and flushes the file, so ``mcap``'s StreamReader
reads a footer-less file up to there (DESIGN.md 'Bags after a crash').
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from hapo_interfaces.enums import ControlSource
from hapo_recorder.episode import intervention_spans
from hapo_recorder.relabel import label_counts, relabel, undesirable_windows

SCHEMA_VERSION = 1
TAG_INFO = '/hapo/tags/episode_info'
TAG_LABELS = '/hapo/tags/labels'
STRING = 'std_msgs/msg/String'
MAX_CHUNK_BYTES = 2**20  # rosbags' McapWriter closes a chunk by itself past 1 MiB


class RecorderError(RuntimeError):
    """An episode bag cannot be written; the text is one line naming the path and the cause."""


def typestore():
    """The message definitions bags are written and read with (standard types of ROS 2 Kilted)."""
    return get_typestore(Stores.ROS2_KILTED)


def episode_prefix(start_ns: int) -> str:
    """``<YYYYmmdd-HHMMSS>_ep``: how the directory names of the episodes started at ``start_ns`` begin."""
    return f'{time.strftime("%Y%m%d-%H%M%S", time.localtime(start_ns / 1e9))}_ep'


def episode_dirname(start_ns: int, index: int, task: str) -> str:
    """``<YYYYmmdd-HHMMSS>_ep<NNNN>_<task>`` in local time; the task reduced to [A-Za-z0-9_-]."""
    slug = re.sub(r'[^A-Za-z0-9_-]+', '-', task).strip('-')[:48] or 'task'
    return f'{episode_prefix(start_ns)}{index:04d}_{slug}'


class EpisodeWriter:
    """Writes one episode; refuses to overwrite, counts per topic, tags steps and writes custom_data at close.

    Use as a context manager or call ``open`` / ``close`` (or ``abort``). All methods raise ``RecorderError``.
    """

    def __init__(self, root: str | Path, info: Mapping[str, Any], index: int = 1, *,
                 chunk_size_bytes: int = 1_000_000, flush_period_ns: int = 500_000_000, store=None):
        self.root = Path(root)
        self.info = dict(info)
        self.index = int(index)
        self.chunk_size_bytes = min(int(chunk_size_bytes), MAX_CHUNK_BYTES)
        self.flush_period_ns = int(flush_period_ns)
        self.store = store or typestore()
        self.path: Path | None = None
        self.counts: dict[str, int] = {}
        self.step_stamps_ns: list[int] = []
        self.sources: list[int] = []
        self.driving_steps = 0  # steps of source policy or human
        self.payload_crc32 = 0  # CRC-32 of every message payload in write order (rosbags writes no chunk CRCs)
        self._writer: Writer | None = None
        self._conns: dict[tuple[str, str], Any] = {}
        self._last_flush_ns = time.monotonic_ns()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def open(self, start_ns: int | None = None) -> Path:
        """Create the bag directory (never an existing one) and write the episode-info tag."""
        start_ns = time.time_ns() if start_ns is None else int(start_ns)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecorderError(f'cannot create output root {self.root}: {exc.strerror or exc}') from None
        for index in range(self.index, self.index + 1000):
            path = self.root / episode_dirname(start_ns, index, str(self.info.get('task', '')))
            if path.exists():
                continue
            writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
            try:
                writer.open()
            except WriterError:
                continue  # created by someone else meanwhile: never overwrite, take the next number
            except OSError as exc:
                raise RecorderError(f'cannot create episode bag {path}: {exc.strerror or exc}') from None
            self._writer, self.path, self.index = writer, path, index
            break
        else:
            raise RecorderError(f'no free episode directory name under {self.root}')
        self.write_string(TAG_INFO, start_ns, json.dumps({'schema_version': SCHEMA_VERSION, **self.info}))
        return path

    def close(self, outcome: str, custom: Mapping[str, Any] | None = None, end_ns: int | None = None) -> dict:
        """Tag labels, write custom_data and metadata.yaml; returns the custom_data written."""
        writer = self._require()
        end_ns = time.time_ns() if end_ns is None else int(end_ns)
        k, demo = int(self.info.get('k', 10)), bool(self.info.get('demo', False))
        labels = relabel(self.sources, k, demo)
        spans = intervention_spans(self.sources)
        tags = {'schema_version': SCHEMA_VERSION, 'k': k, 'demo': demo, 'outcome': outcome,
                'step_stamps_ns': self.step_stamps_ns, 'sources': self.sources, 'labels': labels.tolist(),
                'interventions': [list(s) for s in spans],
                'windows': [] if demo else undesirable_windows(self.sources, k)}
        self.write_string(TAG_LABELS, end_ns, json.dumps(tags))
        n_human = sum(1 for s in self.sources if s == ControlSource.HUMAN)
        driven = sum(1 for s in self.sources if s in (ControlSource.POLICY, ControlSource.HUMAN))
        data = {key: self.info.get(key, '') for key in ('task', 'instruction', 'seed', 'policy_id', 'input_device',
                                                         'software_version', 'start_ns', 'control_rate_hz')}
        data.update({'schema_version': SCHEMA_VERSION, 'outcome': outcome, 'k': k, 'demo': demo,
                     'steps': len(self.sources), 'driven_steps': driven, 'hold_steps': len(self.sources) - driven,
                     'interventions': len(spans), 'intervention_steps': n_human,
                     'label_counts': label_counts(labels), 'topics': self.info.get('topics', {}), 'end_ns': end_ns,
                     'payload_crc32': self.payload_crc32})
        data.update(custom or {})
        for key, value in data.items():
            writer.set_custom_data(key, value if isinstance(value, str) else json.dumps(value))
        try:
            writer.close()
        except OSError as exc:
            self.abort()
            raise RecorderError(f'cannot finish episode bag {self.path}: {exc.strerror or exc}') from None
        self._writer = None
        return data

    def abort(self) -> None:
        """Stop writing without metadata (the bag reads back as truncated); never raises."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(OSError):  # the file is already unusable; the caller has logged why
                writer.abort()

    def __enter__(self) -> EpisodeWriter:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._writer is not None:
            self.close('success')
        else:
            self.abort()

    # -- writing ---------------------------------------------------------------------------------------------
    def write(self, topic: str, msgtype: str, log_ns: int, data: bytes | memoryview) -> None:
        """Write one serialized (CDR) message under ``topic``; the connection is added on first use."""
        writer = self._require()
        conn = self._conns.get((topic, msgtype))
        try:
            if conn is None:
                conn = self._conns[(topic, msgtype)] = writer.add_connection(topic, msgtype, typestore=self.store)
            writer.write(conn, int(log_ns), data)
        except OSError as exc:
            raise RecorderError(f'cannot write episode bag {self.path}: {exc.strerror or exc}') from None
        except (WriterError, KeyError) as exc:
            raise RecorderError(f'cannot record {topic} ({msgtype}) in {self.path}: {exc}') from None
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.payload_crc32 = zlib.crc32(data, self.payload_crc32)
        self._chunk_if_full()

    def write_string(self, topic: str, log_ns: int, text: str) -> None:
        msg = self.store.types[STRING](data=text)
        self.write(topic, STRING, log_ns, self.store.serialize_cdr(msg, STRING))

    def add_step(self, stamp_ns: int, source: int) -> None:
        """Register one executed step (already written as its ``hapo/cmd`` message) for the tags."""
        self.step_stamps_ns.append(int(stamp_ns))
        self.sources.append(int(source))
        self.driving_steps += source in (ControlSource.POLICY, ControlSource.HUMAN)

    def maybe_flush(self, now_ns: int | None = None) -> bool:
        """Close the pending chunk and flush if ``flush_period_ns`` passed since the last flush."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        if self._writer is None or now_ns - self._last_flush_ns < self.flush_period_ns:
            return False
        self.flush(now_ns)
        return True

    def flush(self, now_ns: int | None = None) -> None:
        """Put everything written so far into a complete chunk on disk (what survives a kill -9)."""
        storage = self._require().storage
        self._last_flush_ns = time.monotonic_ns() if now_ns is None else now_ns
        try:
            # rosbags has no public flush: McapWriter.close_chunk/bio are its documented-in-code internals
            # (rosbags 0.11.9 storage_mcap.py); a chunk record is complete on disk after this.
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
        except OSError as exc:
            raise RecorderError(f'cannot write episode bag {self.path}: {exc.strerror or exc}') from None

    def _chunk_if_full(self) -> None:
        storage = self._writer.storage
        if storage.chunk.bio.tell() >= self.chunk_size_bytes:
            self.flush()

    def _require(self) -> Writer:
        if self._writer is None:
            raise RecorderError(f'episode bag {self.path or self.root} is not open')
        return self._writer
