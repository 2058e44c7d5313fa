"""Serves one file over HTTP with range requests, as a COG host does: ``python range_server.py FILE``.

Prints the file's URL, then serves until killed. It runs as its own process because GDAL holds
the GIL while it waits for a response, so a server thread in the test process would never answer.
Each response's byte count is appended to ``FILE.served`` for tests that check what was read.
"""

from __future__ import annotations

import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main(path: Path) -> None:
    data = path.read_bytes()
    log = path.with_name(path.name + ".served")

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.respond(with_body=False)

        def do_GET(self) -> None:
            self.respond(with_body=True)

        def respond(self, with_body: bool) -> None:
            if self.path.split("?")[0] != f"/{path.name}":
                self.send_error(404)
                return
            asked = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            start, end = (int(asked[1]), int(asked[2] or len(data) - 1)) if asked else (0, len(data) - 1)
            chunk = data[start : end + 1]
            self.send_response(206 if asked else 200)
            if asked:
                self.send_header("Content-Range", f"bytes {start}-{start + len(chunk) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Content-Type", "image/tiff")
            self.end_headers()
            if with_body:
                self.wfile.write(chunk)
                with log.open("a") as served:
                    served.write(f"{len(chunk)}\n")

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{server.server_address[1]}/{path.name}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
