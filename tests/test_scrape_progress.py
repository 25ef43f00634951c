"""`pdd scrape` shows its progress with tqdm, like the training stages (issue 9, Commons efficiency)."""
import io

from pdd.source.commons.http import CommonsClient
from pdd.source.commons.walk import Progress, ScrapeReport
from scrape_helpers import EMAIL


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_tqdm_bar_on_a_terminal():
    client = CommonsClient("http://127.0.0.1:9/w/api.php", EMAIL)
    out = Terminal()
    p = Progress(client, out)
    p(ScrapeReport(seen=120, accepted=100, rejected=20))
    p.done()
    text = out.getvalue()
    assert "scrape" in text and "120" in text and "file" in text and "accepted 100" in text and "API requests" in text


def test_no_progress_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(CommonsClient("http://127.0.0.1:9/w/api.php", EMAIL), out)
    p(ScrapeReport(seen=5))
    p.done()
    assert out.getvalue() == ""
