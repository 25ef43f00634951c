"""Thumbnails come only from the configured hosts, also when the server answers with a redirect."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pdd.source.commons.http import CommonsClient, MediaRejected
from scrape_helpers import EMAIL


class Redirector(BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802
        Redirector.hits.append(self.path)
        if self.path == "/offsite":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.2:9/stolen.jpg")  # another host: must not be followed
        elif self.path == "/onsite":
            self.send_response(302)
            self.send_header("Location", "/final.jpg")
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5")
        self.end_headers()
        if self.path == "/final.jpg":
            self.wfile.write(b"bytes")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_redirect_off_the_configured_hosts_is_refused(server):
    client = CommonsClient(f"{server}/w/api.php", EMAIL, max_retries=0, backoff_base=0.01)
    with pytest.raises(MediaRejected, match="leaves the configured hosts"):
        client.media(f"{server}/offsite")
    assert client.media(f"{server}/onsite") == b"bytes"  # same-host redirects are fine
