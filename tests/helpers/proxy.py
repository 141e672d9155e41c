"""A TCP proxy between the engine and a test server, to make the network misbehave on cue: reset
connections, lose a reply, or hold requests in a stall and deliver them later, as a congested
network does after TCP retransmissions."""

from __future__ import annotations

import contextlib
import select
import selectors
import socket
import struct
import threading

from .servers import listen, wait_for


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, client, server):
        self.client = client
        self.server = server
        self.held = bytearray()  # the client's bytes not forwarded yet (a stall)
        self.client_gone = False
        self.server_gone = False
        self.losing_reply = False  # the next reply is dropped and the client reset
        self.late = bytearray()  # what the server answered once the client was gone


def _readable(sock):
    return bool(select.select([sock], [], [], 0)[0])


def _reset(sock):
    """Close ``sock`` with a TCP RST, as a middlebox that drops a connection does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Proxy:
    """Listens on ``.port`` and forwards each connection to ``127.0.0.1:target_port``.

    ``reset_all()`` resets every open connection; ``reset_at(marker)`` resets the connection
    whose next request holds ``marker`` instead of forwarding it, and ``lose_reply(marker)``
    forwards that request but drops its reply and resets the client; ``hold()`` stops
    forwarding requests, and ``release()`` delivers what was held, as a stalled network does
    once it recovers, even for clients that have given up meanwhile.
    """

    def __init__(self, target_port):
        self.target_port = target_port
        self.port, self.listener, self.selector = listen()
        self.links = []
        self.holding = False
        self.reset_marker = None
        self.lose_marker = None
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    # What a test does ------------------------------------------------------------------------

    def reset_all(self):
        with self.lock:
            for link in self.links:
                self._drop(link)

    def reset_at(self, marker):
        """Reset the connection whose next request holds ``marker``; the server never gets it."""
        with self.lock:
            self.reset_marker = marker

    def lose_reply(self, marker):
        """Forward the next request that holds ``marker``, then reset its client instead of
        passing the server's reply on: the request ran, its caller never learns how."""
        with self.lock:
            self.lose_marker = marker

    def hold(self):
        """From now on, keep every request instead of forwarding it."""
        with self.lock:
            self.holding = True

    def release(self):
        """Deliver every request held, then close the server side of each connection whose
        client has gone; return once the server has handled them all (it closes such a
        connection only after running what it had read). Returns what the server answered
        to the clients that had gone."""
        with self.lock:
            # What the clients sent or closed before this call, the loop may not have read
            # yet: read it now, still held, so that a client already gone counts as gone.
            for link in self.links:
                while not link.client_gone and _readable(link.client):
                    self._pump(link, from_client=True)
            self.holding = False
            for link in self.links:
                if link.held and not link.server_gone:
                    link.server.sendall(bytes(link.held))
                    link.held.clear()
                if link.client_gone and not link.server_gone:
                    link.server.shutdown(socket.SHUT_WR)
            orphans = [link for link in self.links if link.client_gone]

        def handled():
            with self.lock:
                return all(link.server_gone for link in orphans)

        wait_for(handled, "the server to run the requests the proxy released")
        return [bytes(link.late) for link in orphans]

    def held_bytes(self):
        with self.lock:
            return sum(len(link.held) for link in self.links)

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
        with self.lock:
            for link in self.links:
                self._drop(link)
            self.listener.close()
            self.selector.close()

    # The forwarding ----------------------------------------------------------------------------

    def _loop(self):
        while self.running:
            events = self.selector.select(timeout=0.05)
            with self.lock:
                for key, _mask in events:
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj.fileno() != -1:
                        link, from_client = key.data
                        self._pump(link, from_client)

    def _accept(self):
        try:
            client, _address = self.listener.accept()
        except BlockingIOError:
            return
        server = socket.create_connection(("127.0.0.1", self.target_port))
        link = _Link(client, server)
        self.links.append(link)
        self.selector.register(client, selectors.EVENT_READ, (link, True))
        self.selector.register(server, selectors.EVENT_READ, (link, False))

    def _pump(self, link, from_client):
        source = link.client if from_client else link.server
        try:
            data = source.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._gone(link, from_client)
        elif from_client:
            self._request(link, data)
        else:
            self._reply(link, data)

    def _request(self, link, data):
        if self.reset_marker and self.reset_marker in data:
            self.reset_marker = None
            self._drop(link)
        elif self.holding:
            link.held += data
        else:
            if self.lose_marker and self.lose_marker in data:
                self.lose_marker = None
                link.losing_reply = True
            link.server.sendall(data)

    def _reply(self, link, data):
        if link.client_gone:
            link.late += data
        elif link.losing_reply:
            self._drop(link)
        else:
            try:
                link.client.sendall(data)
            except OSError:  # the client has gone meanwhile: keep what it did not get
                link.late += data

    def _gone(self, link, from_client):
        """One side closed: pass the close on, unless requests are held for the server."""
        if from_client:
            link.client_gone = True
            self._unregister(link.client)
            link.client.close()
            if not (self.holding or link.held):
                self._unregister(link.server)
                link.server.close()
                link.server_gone = True
        else:
            link.server_gone = True
            self._unregister(link.server)
            link.server.close()
            if not link.client_gone:
                link.client_gone = True
                self._unregister(link.client)
                link.client.close()

    def _drop(self, link):
        for sock in (link.client, link.server):
            self._unregister(sock)
            _reset(sock)
        link.client_gone = link.server_gone = True

    def _unregister(self, sock):
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)
