"""A search endpoint that never advances its cursor must stop the tap with an error, not loop.

The sandbox's cursors always advance, so this one test stands up a deliberately broken App API on
loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from tap_customerio_people import errors

from .conftest import run_tap


class StuckSearch(BaseHTTPRequestHandler):
    """Every search page is the same page with the same cursor."""

    searches = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/v1/customers/attributes"):
            body = {
                "customers": [
                    {
                        "customer": {
                            "id": "1",
                            "identifiers": {"cio_id": "c1", "id": "1"},
                            "attributes": {"cio_id": "c1"},
                            "unsubscribed": False,
                        }
                    }
                ]
            }
        else:
            type(self).searches += 1
            body = {
                "identifiers": [{"cio_id": "c1", "id": "1", "email": None}],
                "ids": ["1"],
                "next": "NEXT",
            }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stuck_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StuckSearch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_cursor_that_does_not_advance_stops_with_an_error(stuck_api: str) -> None:
    config = {"app_api_key": "k", "api_url": stuck_api, "requests_per_second": 100}
    with pytest.raises(errors.StuckCursorError, match="returned the same page twice"):
        run_tap(config)
    assert StuckSearch.searches == 2
