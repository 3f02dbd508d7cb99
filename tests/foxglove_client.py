# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""A Foxglove WebSocket client as the Foxglove app is one (``websockets``): for the view's test and bench_loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import struct
import threading
import time

import websockets
from rclpy.serialization import deserialize_message

# What a current Foxglove app offers; foxglove-sdk 0.30 accepts only the first (the same protocol, renamed).
SUBPROTOCOLS = ['foxglove.sdk.v1', 'foxglove.websocket.v1']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def protobuf_class(schema_b64: str, name: str):
    """The message class of ``name`` from a channel's protobuf schema (a FileDescriptorSet), as a client builds it."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for f in descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(schema_b64)).file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


class Client:
    """A Foxglove WebSocket client: subscribes to every channel as it is advertised; keeps what arrives."""

    def __init__(self, ws):
        self.ws, self.channels, self.data, self.server_info = ws, {}, {}, None

    async def run(self) -> None:
        async for frame in self.ws:
            if isinstance(frame, bytes):
                assert frame[0] == 0x01, f'opcode {frame[0]}'  # messageData
                sub_id, log_ns = struct.unpack_from('<IQ', frame, 1)
                self.data.setdefault(sub_id, []).append((log_ns, frame[13:]))
                continue
            msg = json.loads(frame)
            if msg['op'] == 'serverInfo':
                self.server_info = msg
            elif msg['op'] == 'advertise':
                new = [c for c in msg['channels'] if c['id'] not in self.channels]
                self.channels.update({c['id']: c for c in new})
                await self.ws.send(json.dumps({'op': 'subscribe', 'subscriptions': [
                    {'id': c['id'], 'channelId': c['id']} for c in new]}))  # subscription id = channel id

    def channel(self, topic: str) -> dict | None:
        return next((c for c in self.channels.values() if c['topic'] == topic), None)

    def received(self, topic: str) -> list[bytes]:
        ch = self.channel(topic)
        return [payload for _, payload in self.data.get(ch['id'], [])] if ch else []

    def ros(self, topic: str, cls) -> list:
        return [deserialize_message(p, cls) for p in self.received(topic)]

    def json(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.received(topic)]


async def connect(port: int, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await websockets.connect(f'ws://127.0.0.1:{port}', subprotocols=SUBPROTOCOLS, proxy=None,
                                            open_timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


class ClientThread:
    """``Client`` on its own thread and event loop, for code that is not async (bench_loop): ``with`` connects."""

    def __init__(self, port: int):
        self.port, self.client, self.error, self.task = port, None, None, None
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self.task = asyncio.current_task()
        try:
            ws = await connect(self.port)
        except Exception as exc:  # noqa: BLE001 (reported by __enter__)
            self.error = exc
            self.ready.set()
            return
        self.client = Client(ws)
        self.ready.set()
        try:
            await self.client.run()
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 (reported by __exit__)
            self.error = exc
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)

    def __enter__(self) -> Client:
        self.thread.start()
        if not self.ready.wait(30) or self.error is not None:
            raise RuntimeError(f'no Foxglove connection to port {self.port}: {self.error!r}')
        return self.client

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)
        if self.error is not None:
            raise RuntimeError(f'the Foxglove client on port {self.port} failed: {self.error!r}')
