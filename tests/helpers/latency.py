"""A TCP proxy that puts a long link between the engine and a server: every chunk of bytes, either
way, is delivered ``delay`` seconds after it arrived, in order. It counts request round trips:
a command the client begins while every command it sent before has had its reply begins one.
The tests and the benchmark judge what the engine costs over a slow link by that count."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import socket
import threading
import time

from .servers import listen

# RESP types by what follows their first line: a payload of the length it gives; that many
# elements (twice as many for maps and attributes); or nothing (one line is the element).
PAYLOAD = frozenset(b"$=!")
AGGREGATE = frozenset(b"*%~>|")
PAIRED = frozenset(b"%|")
LINE = frozenset(b"+-:_,#(")


class Messages:
    """Counts the top-level RESP messages of a byte stream fed in chunks: ``begun`` (their first
    byte has come) and ``done`` (complete; a push, which answers no command, is left out)."""

    def __init__(self):
        self.buffer = bytearray()
        self.skip = 0  # bytes of a payload, and its CRLF, still to come
        self.open = []  # per aggregate being read: [elements due, whether it is an attribute]
        self.top = None  # the type of the top-level message being read, None between them
        self.begun = 0
        self.done = 0

    def feed(self, data):
        self.buffer += data
        at = 0
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buffer) - at)
                at += taken
                self.skip -= taken
                if self.skip:
                    break
                self._element_done()
                continue
            if at >= len(self.buffer):
                break
            if self.top is None:
                self.top = self.buffer[at]
                self.begun += 1
            end = self.buffer.find(b"\r\n", at)
            if end < 0:
                break
            kind, size = self.buffer[at], self.buffer[at + 1 : end]
            at = end + 2
            if kind in PAYLOAD and int(size) >= 0:
                self.skip = int(size) + 2
            elif kind in AGGREGATE and int(size) > 0:
                self.open.append([int(size) * (2 if kind in PAIRED else 1), kind == ord("|")])
            else:  # a line, a null, an empty aggregate, or an inline command
                self._element_done()
        del self.buffer[:at]

    def _element_done(self):
        while self.open:
            self.open[-1][0] -= 1
            if self.open[-1][0]:
                return
            if self.open.pop()[1]:
                return  # an attribute: the element it describes is still to come
        if self.top != ord(">"):
            self.done += 1
        self.top = None


class _Side:
    """One socket of a connection: where its bytes go, and what it has sent."""

    def __init__(self, sock, peer, messages):
        self.sock = sock
        self.peer = peer
        self.messages = messages
        self.open = True


class LatencyProxy:
    """Listens on ``.port``, forwards to ``127.0.0.1:target_port`` ``delay`` seconds late each way.
    ``round_trips``: request round trips of every connection so far; ``reset()`` zeroes it."""

    def __init__(self, target_port, delay):
        self.target_port = target_port
        self.delay = delay
        self.port, self._listener, self._selector = listen()
        self.round_trips = 0
        self._sides = {}  # socket -> its _Side
        self._replies = {}  # client socket -> the Messages of the replies delivered to it
        self._due = []  # (when, order, socket to write to, bytes; b"" closes it)
        self._order = itertools.count()
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def reset(self):
        self.round_trips = 0

    def close(self):
        self._running = False
        self._thread.join(timeout=5)
        for sock in list(self._sides):
            sock.close()
        self._listener.close()
        self._selector.close()

    def _loop(self):
        while self._running:
            wait = 0.05
            if self._due:
                wait = max(0.0, min(wait, self._due[0][0] - time.monotonic()))
            for key, _mask in self._selector.select(timeout=wait):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._receive(key.data)
            self._deliver()

    def _accept(self):
        with contextlib.suppress(BlockingIOError):
            client, _address = self._listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._replies[client] = Messages()
            for sock, peer in ((client, server), (server, client)):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sides[sock] = _Side(sock, peer, Messages())
                self._selector.register(sock, selectors.EVENT_READ, self._sides[sock])

    def _receive(self, side):
        try:
            data = side.sock.recv(1 << 20)
        except OSError:
            data = b""
        # Due from its arrival: the counting below takes time of its own.
        due = time.monotonic() + self.delay
        if side.sock in self._replies:
            answered = self._replies[side.sock].done
            sent = side.messages.begun
            side.messages.feed(data)
            if side.messages.begun > sent == answered:
                self.round_trips += 1
        if not data:
            self._selector.unregister(side.sock)
            side.open = False
        heapq.heappush(self._due, (due, next(self._order), side.peer, data))

    def _deliver(self):
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _when, _order, sock, data = heapq.heappop(self._due)
            if sock.fileno() == -1:
                continue
            if not data:
                self._close(sock)
                continue
            with contextlib.suppress(OSError):
                sock.sendall(data)
                if sock in self._replies:
                    self._replies[sock].feed(data)

    def _close(self, sock):
        """Pass on a close that has crossed the link; once both sides have closed, free them."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        side = self._sides.get(sock)
        if side is not None and not side.open:
            for each in (sock, side.peer):
                self._sides.pop(each, None)
                each.close()
