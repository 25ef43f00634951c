"""`pdd mirror serve --fault KIND:ON:N[,N][:RETRY_AFTER]`: the mirror's fault injection from the command line (issue 9)."""
import pytest

from pdd import cli
from pdd.core.errors import PddError
from pdd.source.commons.mirror import make_server, parse_fault


def test_faults_from_the_command_line_are_injected():
    server = make_server("synthetic:5", port=0, faults=["429:api:2,5:3", "reset:media:1"])
    try:
        assert {k: (f.kind, f.retry_after) for k, f in server.faults.items()} == {
            ("api", 2): ("429", 3), ("api", 5): ("429", 3), ("media", 1): ("reset", 1)}
    finally:
        server.httpd.server_close()


@pytest.mark.parametrize("text,why", [
    ("bogus:api:1", "unknown fault 'bogus'"), ("429:disk:1", "ON must be api or media"), ("429:api:x", "invalid literal"),
    ("429:api", "expected KIND:ON:N"), ("429:api:0", "start at 1"), ("429:api:1:-1", "RETRY_AFTER"),
])
def test_bad_fault_is_a_one_line_error(text, why):
    with pytest.raises(PddError, match=why):
        parse_fault(text)


def test_cli_refuses_a_bad_fault_before_serving(capsys):
    rc = cli.main(["mirror", "serve", "synthetic:5", "--port", "0", "--fault", "bogus:api:1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--fault 'bogus:api:1'" in err
