"""The thumbnail host allow-list checks the host `requests` will actually connect to (issue 9, rights 8):
`http://localhost:P\\@127.0.0.1:P/x.jpg` passed (urlsplit reads 127.0.0.1) while requests connected to
localhost. Backslashes, userinfo and hosts the two parsers disagree on are refused, on redirects too."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pdd.source.commons.http import CommonsClient, MediaRejected, api_hop_problem, media_hop_problem, media_url_problem, url_target
from scrape_helpers import EMAIL

HOSTS = {"127.0.0.1", "upload.wikimedia.org"}


@pytest.mark.parametrize("url", [
    "http://localhost:8080\\@127.0.0.1:8080/x.jpg",
    "http://localhost\\@127.0.0.1/x.jpg",
    "http://127.0.0.1\\.evil.example/x.jpg",
    "http://user@127.0.0.1/x.jpg",
    "http://user:pw@upload.wikimedia.org/x.jpg",
    "http://evil.example@upload.wikimedia.org/x.jpg",
    "http://upload.wikimedia.org@evil.example/x.jpg",
    "http://upload.wikimedia.org /x.jpg",
    "http://upload.wikimedia.org\t/x.jpg",
    "ftp://upload.wikimedia.org/x.jpg",
    "file:///etc/passwd",
    "http://evil.example/x.jpg",
    "//upload.wikimedia.org/x.jpg",
    "",
    None,
])
def test_hostile_thumbnail_urls_are_refused(url):
    assert media_url_problem(url, HOSTS) is not None


@pytest.mark.parametrize("url", [
    "https://upload.wikimedia.org/wikipedia/commons/thumb/a/ab/X.jpg/960px-X.jpg",
    "https://upload.wikimedia.org/wikipedia/commons/a/ab/X.jpg?utm_source=commons",
    "http://127.0.0.1:8080/media/x.jpg",
    "HTTPS://UPLOAD.WIKIMEDIA.ORG/x.jpg",
])
def test_plain_thumbnail_urls_pass(url):
    assert media_url_problem(url, HOSTS) is None


class Server(BaseHTTPRequestHandler):
    hits: list = []

    def do_GET(self):  # noqa: N802
        Server.hits.append((self.headers.get("Host"), self.path))
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}\\@127.0.0.1:"
                                         f"{self.server.server_address[1]}/x.jpg")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"bytes")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    Server.hits = []
    yield srv.server_address[1]
    srv.shutdown()


def test_escape_is_never_fetched_directly_or_by_redirect(server):
    port = server
    client = CommonsClient(f"http://127.0.0.1:{port}/w/api.php", EMAIL, max_retries=0, backoff_base=0.01)
    with pytest.raises(MediaRejected, match="backslash"):
        client.media(f"http://localhost:{port}\\@127.0.0.1:{port}/x.jpg")
    assert Server.hits == []
    with pytest.raises(MediaRejected, match="backslash"):
        client.media(f"http://127.0.0.1:{port}/hop")
    assert Server.hits == [(f"127.0.0.1:{port}", "/hop")]   # the redirect target was never requested
    assert client.media(f"http://127.0.0.1:{port}/x.jpg") == b"bytes"


def test_hop_rules_for_api_calls_and_media():
    """(issue 25, class 4) An API call's hop keeps the configured API's scheme, host and port (or is its
    https upgrade); a media hop keeps to the media hosts and never goes from https down to http."""
    api = url_target("http://127.0.0.1:8080/w/api.php")
    assert api_hop_problem("http://127.0.0.1:8080/w/api.php?x=1", api) is None
    assert api_hop_problem("https://127.0.0.1/w/api.php", api) is None          # the https upgrade
    assert "not the configured API host http://127.0.0.1:8080" in api_hop_problem("http://127.0.0.1:8081/w/api.php", api)
    assert "not the configured API host" in api_hop_problem("http://localhost:8080/w/api.php", api)
    assert "backslash" in api_hop_problem("http://localhost:8080\\@127.0.0.1:8080/w/api.php", api)
    secure = url_target("https://commons.wikimedia.org/w/api.php")
    assert "http://commons.wikimedia.org:80 is not" in api_hop_problem("http://commons.wikimedia.org/w/api.php", secure)
    assert media_hop_problem("https://upload.wikimedia.org/b.jpg", "https://upload.wikimedia.org/a.jpg", HOSTS) is None
    assert "https down to http" in media_hop_problem("http://upload.wikimedia.org/b.jpg", "https://upload.wikimedia.org/a.jpg", HOSTS)
    assert "not configured" in media_hop_problem("https://evil.example/b.jpg", "https://upload.wikimedia.org/a.jpg", HOSTS)
