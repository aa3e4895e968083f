"""A loopback TCP forwarder that can play a service going down and coming back.

`FaultyProxy(host, port)` listens on 127.0.0.1 (a free port, kept for its whole life) and
forwards each connection to the target. `cut()` is the service going down: every open
connection is torn down mid-stream and the listening socket is closed, so new connections are
refused (ECONNREFUSED, as from a stopped server). `restore()` listens on the same port again, so
clients configured with the proxy's address reconnect as they would to a restarted server.
`cut_when(pattern, forward=n)` arms a trip wire instead: the first time a client sends
`pattern`, only `n` bytes from its start reach the service, then the proxy cuts (a request that
dies halfway through its body, say).

Point a client at `proxy.port` instead of the service's own; the service itself keeps running
and keeps its data, which is what lets a test take down "PostgreSQL" that a Prefect server also
uses, or "S3" that keeps its objects in memory.

Threads: one accepts while the proxy is up, one pumps both directions of each connection. Every
thread is joined by `cut()` / `close()` within `join_timeout_s`; beyond `max_connections` open
connections new ones are dropped, so a runaway client cannot grow the thread count.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

BUFFER = 1 << 16


class FaultyProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        max_connections: int = 64,
        connect_timeout_s: float = 5.0,
        join_timeout_s: float = 5.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.join_timeout_s = join_timeout_s
        self.host = "127.0.0.1"
        self.port = 0  # chosen on the first listen, then kept
        self.accepted = 0  # connections forwarded over the proxy's life
        self.cuts = 0
        self.tripped = threading.Event()  # set once a trip wire's cut is complete
        self._lock = threading.Lock()  # guards _up, _open, _pumps, _trip
        self._up = False  # forwarding: checked under the lock before a connection is added
        self._open: dict[socket.socket, tuple[socket.socket, threading.Thread]] = {}
        self._pumps: list[threading.Thread] = []  # started and maybe still finishing
        self._trip: tuple[bytes, int] | None = None  # (pattern, bytes forwarded from its start)
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._tripper: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ control

    @property
    def is_up(self) -> bool:
        return self._up

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def start(self) -> FaultyProxy:
        """Listen (on the port chosen the first time) and forward; a no-op when already up."""
        if self._closed:
            raise RuntimeError("this proxy is closed")
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The same port again after cut(): the old connections' TIME_WAIT must not block it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        with self._lock:
            self._up = True
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"proxy-accept-{self.port}"
        )
        self._acceptor.start()
        return self

    def restore(self) -> FaultyProxy:
        """The service is back: accept and forward again, on the same port."""
        return self.start()

    def cut(self) -> None:
        """The service goes down: break every open connection and refuse new ones."""
        if self._listener is not None:
            self.cuts += 1
        self._stop_forwarding()
        if self._acceptor is not None:
            self._join(self._acceptor)
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()  # from now on a connect is refused
            self._listener = None
        with self._lock:  # every pump, also those whose connection ended on its own
            pumps, self._pumps = self._pumps, []
        for thread in pumps:
            if thread is not threading.current_thread():
                self._join(thread)

    def cut_when(self, pattern: bytes, *, forward: int = 0) -> threading.Event:
        """Arm a trip wire. The first connection whose client sends `pattern` (within one read)
        trips it: every other connection is cut at once and no new one is forwarded; this one
        forwards at most `forward` bytes from the pattern's start and nothing back (an answer
        from the service is lost), then the proxy cuts. Returns `tripped`, set once the cut is
        complete: `restore()` after it, not before."""
        if not pattern:
            raise ValueError("an empty pattern would match every connection")
        self.tripped.clear()
        with self._lock:
            self._trip = (pattern, forward)
        return self.tripped

    def close(self) -> None:
        """Cut and stop for good; every thread is joined."""
        if self._closed:
            return
        with self._lock:
            self._trip = None
        if self._tripper is not None:
            self._join(self._tripper)
        self.cut()
        self._closed = True

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _stop_forwarding(self) -> None:
        """At once, from any thread: no new connection is forwarded, and every open one is shut
        down (its pump wakes up and closes both sockets)."""
        with self._lock:
            self._up = False
            conns = [(client, upstream) for client, (upstream, _) in self._open.items()]
        for sock in (sock for pair in conns for sock in pair):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _join(self, thread: threading.Thread) -> None:
        thread.join(self.join_timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"{thread.name} did not stop within {self.join_timeout_s} s")

    # ------------------------------------------------------------------ threads

    def _accept_loop(self, listener: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while self._up:
                if not selector.select(timeout=0.05):
                    continue
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue
                self._forward(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout_s)
        except OSError:
            client.close()  # the real service is down: the client sees its connection end
            return
        for sock in (client, upstream):
            sock.settimeout(None)
            # Small protocol messages (PostgreSQL's) would otherwise wait on delayed ACKs.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._pump, args=(client, upstream), name=f"proxy-pump-{self.port}"
        )
        with self._lock:
            forwarding = self._up and len(self._open) < self.max_connections
            if forwarding:
                self._open[client] = (upstream, thread)
                self._pumps = [t for t in self._pumps if t.is_alive()] + [thread]
                self.accepted += 1
        if not forwarding:  # cut meanwhile, or too many: as if the server had dropped it
            client.close()
            upstream.close()
            return
        thread.start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        budget: int | None = None  # once this connection tripped the wire: bytes it may still send
        try:
            with selectors.DefaultSelector() as selector:
                for sock in peers:
                    selector.register(sock, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select(timeout=0.5):
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        data = source.recv(BUFFER)
                        if not data:
                            return  # one side ended (or was cut): end the other too
                        if source is upstream:
                            if budget is not None:
                                return  # the answer to the tripping request is lost
                            client.sendall(data)
                            continue
                        if budget is None and (tripped := self._trips(data, client)) is not None:
                            start, budget = tripped
                            upstream.sendall(data[:start])
                            data = data[start:]
                        if budget is not None:
                            upstream.sendall(data[:budget])
                            budget -= min(budget, len(data))
                            if budget == 0:
                                return
                            continue
                        upstream.sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._open.pop(client, None)
            for sock in peers:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            if budget is not None:  # finish the cut elsewhere: `cut()` joins this thread
                self._tripper = threading.Thread(
                    target=self._cut_and_tell, name=f"proxy-trip-{self.port}"
                )
                self._tripper.start()

    def _trips(self, data: bytes, client: socket.socket) -> tuple[int, int] | None:
        """If `data` holds the armed pattern: disarm it, stop forwarding every other connection
        at once, and return (where the pattern starts, bytes this one may still forward)."""
        with self._lock:
            trip = self._trip
            start = data.find(trip[0]) if trip is not None else -1
            if trip is None or start < 0:
                return None
            self._trip = None
            self._up = False  # no new connection is forwarded from here on
            others = [(c, u) for c, (u, _) in self._open.items() if c is not client]
        for sock in (sock for pair in others for sock in pair):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return start, trip[1]

    def _cut_and_tell(self) -> None:
        self.cut()
        self.tripped.set()
