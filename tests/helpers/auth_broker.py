"""A tansu broker that requires SASL authentication, and a TCP tap that records what clients send it."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from pinpipe import local


@contextmanager
def authenticating_tansu(log_dir: Path):
    """tansu with ``--authentication`` on a free loopback port; yields ``host:port``."""
    port = local.free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(log_dir / "tansu-auth.log", "ab") as log:
        process = subprocess.Popen([str(local.tansu_binary()), "broker", "--listener-url", url,
                                    "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
                                    "--authentication"], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"tansu --authentication did not start; see {log_dir}/tansu-auth.log")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


class TcpTap:
    """Forwards a loopback port to ``target`` and keeps every byte clients sent (to see what went on the wire)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # the broker is gone (end of a test): drop the client
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if record:
                    with self._lock:
                        self.sent += chunk
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._server.close()
