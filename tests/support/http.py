"""The base of the loopback test servers: HTTP/1.1, quiet, and without Nagle's 40 ms stall."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment: without this, Nagle + delayed ACK add 40 ms a response.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, *args: object) -> None:
        pass
