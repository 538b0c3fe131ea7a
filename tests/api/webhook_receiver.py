"""A webhook receiver for tests: answers 500 to every other request (the first of each pair), 204 to the
rest, and writes every request it saw (headers, body, status) as a JSON line. Run: python
webhook_receiver.py PORT LOGFILE."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_lock = threading.Lock()
_seen = [0]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        with _lock:
            _seen[0] += 1
            status = 500 if _seen[0] % 2 else 204
            with open(sys.argv[2], "a") as f:
                f.write(
                    json.dumps(
                        {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "status": status}
                    )
                    + "\n"
                )
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
