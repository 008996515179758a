"""Clients for the local Apache Kafka broker's SCRAM and TLS listeners, and a TCP tap that records what clients send.

The broker (pinpipe.local) listens with SASL/SCRAM-SHA-512 on SASL_PLAINTEXT and on SASL_SSL (a
certificate for 127.0.0.1 signed by a throwaway CA); :func:`pinpipe.local.kafka_listeners` says where.
"""

from __future__ import annotations

import socket
import threading

from pinpipe.local import KafkaListeners
from streaming.kafka_auth import KafkaAuthSettings, auth_client_config

USER = "alice"
WRONG_PASSWORD = "not-alices-password"


def scram_auth(listeners: KafkaListeners, *, tls: bool = True, user: str = USER, password: str | None = None,
               trust_ca: bool = True) -> KafkaAuthSettings:
    """The project's auth settings for ``user`` (by default with the broker's password for them).

    ``trust_ca=False``: no ``ca_location``, so the client trusts only the system's CAs, not the broker's.
    """
    return KafkaAuthSettings(mechanism="sasl_scram", tls=tls, sasl_username=user,
                             sasl_password=listeners.users[user] if password is None else password,
                             scram_algorithm=listeners.mechanism.removeprefix("SCRAM-"),
                             ca_location=listeners.ca_location if tls and trust_ca else None)


def scram_client_config(listeners: KafkaListeners, *, tls: bool = True, user: str = USER,
                        password: str | None = None, trust_ca: bool = True) -> dict[str, str]:
    """String client settings (bootstrap and auth) for the SASL_SSL listener (``tls``) or SASL_PLAINTEXT."""
    auth = scram_auth(listeners, tls=tls, user=user, password=password, trust_ca=trust_ca)
    return {"bootstrap.servers": listeners.sasl_ssl if tls else listeners.sasl_plaintext, **auth_client_config(auth)}


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
