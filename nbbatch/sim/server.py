"""The simulator on a real socket: `nbbatch simulate` and the end-to-end tests."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nbbatch.sim.apis import simulator_core
from nbbatch.sim.core import SimulatorCore, admin_error
from nbbatch.sim.options import SimulatorOptions


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never keep the process alive
    request_queue_size = 128  # the default 5 resets connections when a client opens dozens

    def __init__(self, address: tuple[str, int], core: SimulatorCore, log_requests: bool):
        super().__init__(address, _Handler)
        self.core, self.log_requests = core, log_requests
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(conn)

    def close_connections(self) -> None:
        """Wake handler threads parked on idle keep-alive connections."""
        with self._connections_lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so httpx pools connections as with the real API
    server_version, sys_version = "nbbatch-simulator", ""
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stall
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def _respond(self) -> None:
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            response = self.server.core.handle(self.command, self.path, dict(self.headers), body)
        except Exception as e:  # a simulator bug must still answer, not drop the connection
            response = admin_error(500, f"simulator error: {e!r}")
        if (response.delay > 0 and not self._wait(response.delay)) or response.drop:
            self.close_connection = True  # stopping, the client gave up, or a lost answer
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in response.stream:  # made as it goes: a 1.5 GB file is never whole
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-download

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _respond

    def _wait(self, seconds: float) -> bool:
        """Sleep in small steps; False as soon as the server stops or the client disconnects."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.server.stopping.wait(min(left, 0.05)) or self._client_gone():
                return False
        return True

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log_requests:
            super().log_message(format, *args)


class SimulatorServer:
    """The simulator on a real socket. Binds at construction, so `.url` is known at once."""

    def __init__(
        self,
        options: SimulatorOptions,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_requests: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = simulator_core(options, clock)
        self._httpd = _HTTPServer((host, port), self.core, log_requests)
        self._thread: threading.Thread | None = None
        bound_host, bound_port = self._httpd.server_address[:2]
        if isinstance(bound_host, bytes):
            bound_host = bound_host.decode()
        self.url = f"http://{bound_host}:{bound_port}"

    def start(self) -> SimulatorServer:
        if self._thread is None:
            self._thread = threading.Thread(
                # stop() waits up to one poll for the accept loop to notice.
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01},
                name="nbbatch-simulator", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    options: SimulatorOptions,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    on_ready: Callable[[str], None] | None = None,
    log_requests: bool = False,
) -> None:
    """Run the simulator until Ctrl-C or SIGTERM, then stop it and return."""
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with SimulatorServer(options, host, port, log_requests=log_requests) as server:
            if on_ready:
                on_ready(server.url)
            while not stop.wait(0.2):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
