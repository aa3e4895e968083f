"""The downloader's guards: schemes, addresses, redirects, size, and what counts as a PDF."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from ldrt_core.download import Downloader, DownloadPolicy, check_url
from ldrt_core.errors import (
    DownloadError,
    NotAPDFError,
    RefusedURLError,
    TooLargeError,
    TransientDownloadError,
    TruncatedPDFError,
)
from tests.support.s2_replay import minimal_pdf

pytestmark = pytest.mark.unit
PDF = minimal_pdf("a paper")
LOCAL = frozenset({"127.0.0.1"})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """Routes: /pdf, /html, /big (no Content-Length), /redirect-*, /nolength-pdf, /cut."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/pdf":
                self._send(200, PDF)
            elif self.path == "/html":
                self._send(200, b"<html><body>Please sign in</body></html>")
            elif self.path == "/missing":
                self._send(404, b"gone")
            elif self.path == "/redirect-ok":
                self._redirect("/pdf")
            elif self.path == "/redirect-private":
                self._redirect("http://10.1.2.3/paper.pdf")
            elif self.path == "/redirect-loop":
                self._redirect("/redirect-loop")
            elif self.path in ("/big", "/cut"):
                # no Content-Length: the body ends when the connection closes
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                if self.path == "/big":
                    self.wfile.write(b"%PDF-1.4\n" + b"0" * 300_000)
                else:
                    self.wfile.write(PDF[: len(PDF) // 2])
                self.close_connection = True

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, to: str) -> None:
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def fetch(url: str, **policy: object) -> bytes:
    downloader = Downloader(DownloadPolicy(**{"allowed_hosts": LOCAL, **policy}))  # type: ignore[arg-type]
    try:
        with downloader.open(url) as stream:
            return stream.read()
    finally:
        downloader.close()


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.org/a.pdf", "gopher://x", "javascript:alert(1)", "//x/y"],
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(RefusedURLError, match="only http and https"):
        check_url(url, frozenset())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.pdf",
        "http://localhost/a.pdf",
        "http://10.0.0.8/a.pdf",
        "http://192.168.1.1/a.pdf",
        "http://172.16.0.1/a.pdf",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://[::1]/a.pdf",
        "http://0.0.0.0/a.pdf",
    ],
)
def test_private_and_loopback_addresses_are_refused(url: str) -> None:
    with pytest.raises(RefusedURLError, match="LDRT_DOWNLOAD_ALLOW_HOSTS"):
        check_url(url, frozenset())


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://example.org:99999/a.pdf", "Port out of range"),
        ("https://example.org:8o/a.pdf", "Port could not be cast"),
        ("https://[::1/a.pdf", "Invalid IPv6 URL"),
        ("https://" + "a" * 70 + ".org/a.pdf", "label empty or too long"),
    ],
)
def test_malformed_urls_are_refused_not_crashed_on(url: str, reason: str) -> None:
    with pytest.raises(RefusedURLError, match=reason):
        check_url(url, frozenset())


def test_an_unsendable_url_is_refused(server: str) -> None:
    with pytest.raises(RefusedURLError, match="non-printable"):
        fetch(f"{server}/p\x00df")


def test_an_allowed_host_may_be_loopback(server: str) -> None:
    assert fetch(f"{server}/pdf") == PDF
    with pytest.raises(RefusedURLError):
        fetch(f"{server}/pdf", allowed_hosts=frozenset())


def test_redirects_are_followed_and_checked_hop_by_hop(server: str) -> None:
    assert fetch(f"{server}/redirect-ok") == PDF
    with pytest.raises(RefusedURLError, match=r"10\.1\.2\.3"):
        fetch(f"{server}/redirect-private")
    with pytest.raises(RefusedURLError, match="redirects"):
        fetch(f"{server}/redirect-loop")


def test_an_html_landing_page_is_not_a_pdf(server: str) -> None:
    with pytest.raises(NotAPDFError, match="HTML"):
        fetch(f"{server}/html")


def test_size_cap_by_header_and_while_streaming(server: str) -> None:
    with pytest.raises(TooLargeError, match="LDRT_DOWNLOAD_MAX_BYTES"):
        fetch(f"{server}/pdf", max_bytes=100)  # Content-Length says so up front
    with pytest.raises(TooLargeError):
        fetch(f"{server}/big", max_bytes=100_000)  # no length: counted as it streams


def test_a_pdf_cut_short_is_a_transient_failure(server: str) -> None:
    with pytest.raises(TruncatedPDFError) as info:
        fetch(f"{server}/cut")
    assert info.value.transient


def test_http_errors_say_whether_to_retry(server: str) -> None:
    with pytest.raises(DownloadError) as info:
        fetch(f"{server}/missing")
    assert not info.value.transient
    with pytest.raises(TransientDownloadError):
        fetch("http://127.0.0.1:9/nothing-listens-here")
