"""A loopback TCP proxy the drills can cut and restore, to take a database away from a server.

`cut("reset")` is a stopped database: every open connection is reset and new ones are
closed at once. `cut("blackhole")` is an unreachable one: connections stay open but
nothing is forwarded either way, and new connections are accepted and never answered.
`cut_after(marker)` is a connection lost at the worst moment: the next message a client sends
containing `marker` (say, a COMMIT) reaches the database, its answer never comes back, and then
every connection is reset. `hold_after(marker, seconds)` is a database that pauses: once a message containing
`marker` went to it, every answer is held for `seconds`, then forwarded. The shared PostgreSQL service itself is
never touched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Literal

Mode = Literal["forward", "reset", "blackhole"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._mode: Mode = "forward"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = threading.Event()
        self._marker: bytes | None = None
        self._settle = 0.5
        self._swallowing = False
        self._hold = 0.0
        self._held_until = 0.0
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def mode(self) -> Mode:
        return self._mode

    def cut(self, how: Literal["reset", "blackhole"] = "reset") -> None:
        with self._lock:
            self._mode = how
            if how == "reset":
                self._drop_all()

    def cut_after(self, marker: bytes, settle: float = 0.5) -> None:
        """Arm the cut: once `marker` went to the database, drop its answers, and `settle` seconds later
        (time for it to act on what it received) reset every connection."""
        self._marker, self._settle = marker, settle

    def hold_after(self, marker: bytes, seconds: float) -> None:
        """Arm a pause: once `marker` went to the database, hold every answer (of any connection) for `seconds`,
        then forward them as they came."""
        self._marker, self._hold = marker, seconds

    def restore(self) -> None:
        """Forward new connections again; connections cut off while blackholed are reset."""
        with self._lock:
            if self._mode == "blackhole":
                self._drop_all()
            self._mode, self._swallowing = "forward", False

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._drop_all()
        self._thread.join(5)
        self._listener.close()

    def _drop_all(self) -> None:
        for sock in list(self._sockets):
            _reset(sock)
        self._sockets.clear()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with self._lock:
                mode = self._mode
                if mode == "reset":
                    _reset(client)
                    continue
                self._sockets.add(client)
                if mode == "blackhole":
                    continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                with self._lock:
                    self._sockets.discard(client)
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.add(upstream)
            for source, sink, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, outbound), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                while self._mode == "blackhole" and not self._closed.is_set():
                    if self._closed.wait(0.05):
                        return
                if self._mode != "forward":
                    break
                if not outbound and self._swallowing:
                    continue  # the database's answer to the marked message is lost
                if not outbound and self._closed.wait(max(0.0, self._held_until - time.monotonic())):
                    return
                if outbound and self._marker is not None and self._marker in data:
                    self._marked()
                sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            for sock in (source, sink):
                if sock in self._sockets:
                    self._sockets.discard(sock)
                    _reset(sock)

    def _marked(self) -> None:
        """The marked message is on its way: pause the answers (`hold_after`), or lose them and cut (`cut_after`)."""
        self._marker = None
        if self._hold:
            self._held_until, self._hold = time.monotonic() + self._hold, 0.0
        else:
            self._swallowing = True
            threading.Timer(self._settle, self.cut).start()


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a dying server or a broken network would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
