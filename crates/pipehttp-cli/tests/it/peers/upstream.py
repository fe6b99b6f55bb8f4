"""A target for the proxy tests: Python's own HTTP/1.1 server (http.server)
on a Unix socket, one thread per connection.

Usage: upstream.py SOCKET_PATH. Prints "listening" once it accepts.

Routes:
  GET  /headers   the request's method, path and header lines as JSON;
                  the answer also carries X-Hop, which its Connection
                  header names, so a proxy must drop it
  GET  /sse       text/event-stream, chunked: "data: 1", then, once
                  GET /release has been asked, "data: 2", then the end
  GET  /release   lets /sse finish
  GET  /slow      answers only after 60 s
  POST|PUT /sink  reads the body as it streams (Content-Length or chunked)
                  and answers {"bytes": N}
  GET|POST /upgrade with "Upgrade: echo": 101, then reads the raw stream to
                  its end (the client's half-close) and only then writes
                  "got N bytes" and closes
"""

import json
import os
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler

RELEASE = threading.Event()
CHUNK = 1 << 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "unix"

    def reply(self, status, body, content_type="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "echo":
            return self.upgrade()
        if self.path == "/headers":
            body = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k.lower(), v] for k, v in self.headers.items()],
                }
            ).encode()
            return self.reply(
                200,
                body,
                "application/json",
                [("X-Hop", "must not pass"), ("Connection", "X-Hop")],
            )
        if self.path == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk(b"data: 1\n\n")
            if not RELEASE.wait(60):
                return
            # The next /sse waits for its own release.
            RELEASE.clear()
            self.chunk(b"data: 2\n\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/release":
            RELEASE.set()
            return self.reply(200, b"released")
        if self.path == "/slow":
            threading.Event().wait(60)
            return self.reply(200, b"late")
        return self.reply(404, b"not found")

    def do_POST(self):
        if self.headers.get("Upgrade", "").lower() == "echo":
            return self.upgrade()
        if self.path != "/sink":
            return self.reply(404, b"not found")
        total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                self.skip(size)
                total += size
                self.rfile.readline()
        else:
            total = int(self.headers.get("Content-Length", "0"))
            self.skip(total)
        self.reply(200, json.dumps({"bytes": total}).encode(), "application/json")

    do_PUT = do_POST

    def skip(self, size):
        """Reads `size` bytes of the body a buffer at a time, keeping none."""
        while size:
            got = len(self.rfile.read(min(size, CHUNK)))
            if not got:
                raise ConnectionError("the body broke off")
            size -= got

    def upgrade(self):
        self.send_response(101)
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", "echo")
        self.end_headers()
        self.wfile.flush()
        total = 0
        while True:
            data = self.rfile.read1(CHUNK)
            if not data:
                break
            total += len(data)
        self.wfile.write(b"got %d bytes\n" % total)
        self.wfile.flush()
        self.close_connection = True


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    with Server(path, Handler) as server:
        print("listening", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
