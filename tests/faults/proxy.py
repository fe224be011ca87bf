"""A loopback TCP proxy that can cut a stream in the middle of an event, or partition a client.

It sits between one kubernetes client and the API emulator (or any HTTP server), pumping raw
bytes both ways, so nothing above the socket is mocked:

* :meth:`TcpProxy.cut_on` arms a one-shot cut: the next time ``marker`` shows up in a response
  stream, the proxy forwards the bytes up to the *middle* of the marker and then closes both
  sides — the client sees a watch event truncated mid-JSON, mid-chunk.
* :meth:`TcpProxy.partition` closes every open connection and refuses new ones (accept, then
  close at once), like a network partition between this client and the API server;
  :meth:`TcpProxy.heal` ends it.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._marker: bytes | None = None
        self._partitioned = False
        self._stopped = threading.Event()
        self.cuts = 0
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._close_all()
        self._thread.join(timeout=2)

    # -- controls --------------------------------------------------------------------------------
    def cut_on(self, marker: bytes) -> None:
        with self._lock:
            self._marker = marker

    @property
    def armed(self) -> bool:
        with self._lock:
            return self._marker is not None

    def partition(self) -> None:
        with self._lock:
            self._partitioned = True
        self._close_all()

    def heal(self) -> None:
        with self._lock:
            self._partitioned = False

    # -- plumbing --------------------------------------------------------------------------------
    def _close_all(self) -> None:
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                partitioned = self._partitioned
            if partitioned:
                with contextlib.suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, response: bool) -> None:
        tail = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if response:
                    with self._lock:
                        marker = self._marker
                    if marker is not None:
                        window = tail + data
                        at = window.find(marker)
                        if at >= 0:
                            with self._lock:
                                self._marker = None
                                self.cuts += 1
                            # Forward up to the middle of the marker, then cut the stream.
                            keep = at + len(marker) // 2 - len(tail)
                            if keep > 0:
                                sink.sendall(data[:keep])
                            break
                        tail = window[-len(marker):]
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)
