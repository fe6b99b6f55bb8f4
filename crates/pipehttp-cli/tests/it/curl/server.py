#!/usr/bin/env python3
"""The differential suite's HTTP server: curl and `pipehttp request` send the
same command line to it, and it answers so that the two runs can be compared
byte for byte.

Requests it echoes are described canonically (JSON, keys sorted, headers
lowercased and sorted, bodies by size and digest, forms parsed with Python's
own parsers), so what must differ between two honest clients (a multipart
boundary, the default User-Agent) does not show, and everything else does.

Usage: server.py SOCKET_PATH [--tls CERT KEY [--client-ca CA]]
Prints "ready" once it listens. Stdlib only, plus brotli and zstandard
(Debian: python3-brotli, python3-zstandard).
"""

import email.parser
import email.policy
import gzip
import hashlib
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler

import brotli
import zstandard

# Bodies long enough that compression is real.
TEXT = b"".join(b"line %04d of the compressible text body\n" % i for i in range(200))

# How often each /flaky key has been asked for since the last reset.
FLAKY = {}
FLAKY_LOCK = threading.Lock()

# Headers whose value tells only which client sent the request.
DEFAULT_AGENTS = ("curl/", "pipehttp/")


def pseudo_random(n):
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d" % counter).digest()
        counter += 1
    return bytes(out[:n])


def encode(data, encoding):
    if encoding == "gzip":
        return gzip.compress(data, mtime=0)
    if encoding == "deflate":
        return zlib.compress(data)
    if encoding == "br":
        return brotli.compress(data)
    if encoding == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if encoding == "identity":
        return data
    raise ValueError(encoding)


def describe_body(body):
    d = {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    try:
        text = body.decode("utf-8")
        if len(text) <= 2048:
            d["text"] = text
    except UnicodeDecodeError:
        pass
    return d


def parse_multipart(content_type, body):
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return {"error": "not multipart"}
    fields = []
    for part in message.iter_parts():
        field = {
            "name": part.get_param("name", header="content-disposition"),
            "filename": part.get_filename(),
            # RFC 7578 4.4: a part without a Content-Type is text/plain.
            "content_type": part.get_content_type(),
        }
        field.update(describe_body(part.get_payload(decode=True) or b""))
        fields.append(field)
    return fields


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def version_string(self):
        return "difftest"

    # -- helpers -----------------------------------------------------------

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body=b"", headers=(), reason=None):
        """A response with a Content-Length; HEAD gets the head only."""
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def raw(self, data, close=True):
        self.wfile.write(data)
        self.wfile.flush()
        if close:
            self.close_connection = True

    def describe(self, body):
        headers = []
        content_type = self.headers.get("Content-Type", "")
        multipart = content_type.lower().startswith("multipart/")
        for name, value in self.headers.items():
            name = name.lower()
            if name == "expect":
                continue  # curl asks for 100-continue on large bodies
            if name == "user-agent" and value.startswith(DEFAULT_AGENTS):
                value = "<default>"
            if multipart and name == "content-length":
                continue  # depends on the boundary's length
            if multipart and name == "content-type":
                value = value.split(";")[0] + "; boundary=<boundary>"
            headers.append([name, value])
        headers.sort()
        d = {"method": self.command, "path": self.path, "headers": headers}
        if multipart:
            d["form"] = parse_multipart(content_type, body)
        else:
            d["body"] = describe_body(body)
            if content_type.startswith("application/x-www-form-urlencoded"):
                try:
                    d["form"] = urllib.parse.parse_qsl(
                        body.decode("utf-8"), keep_blank_values=True
                    )
                except UnicodeDecodeError:
                    d["form"] = "not utf-8"
        return d

    def echo(self, body, status=200, headers=()):
        data = json.dumps(self.describe(body), sort_keys=True, indent=1).encode() + b"\n"
        self.reply(status, data, [("Content-Type", "application/json")] + list(headers))

    # -- routes ------------------------------------------------------------

    def handle_any(self):
        body = self.read_body()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        parts = [p for p in url.path.split("/") if p]
        route = parts[0] if parts else ""
        arg = parts[1] if len(parts) > 1 else ""

        if route == "status":
            extra = [tuple(h.split(":", 1)) for h in query.get("h", "").split("|") if ":" in h]
            return self.reply(int(arg), b"status %s\n" % arg.encode(), [("Content-Type", "text/plain")] + extra)
        if route == "redirect":
            # /redirect/CODE?to=LOCATION
            return self.reply(int(arg), b"redirecting\n", [("Location", query.get("to", "/echo")), ("Content-Type", "text/plain")])
        if route == "chain":
            # /chain/N: N redirects, then the echo.
            n = int(arg)
            location = "/chain/%d" % (n - 1) if n > 1 else "/echo?from=chain"
            return self.reply(302, b"", [("Location", location)])
        if route == "loop":
            return self.reply(302, b"again\n", [("Location", "/loop")])
        if route == "cookies":
            # /cookies/set?raw=SET-COOKIE|SET-COOKIE[&next=LOCATION]
            if arg == "set":
                cookies = [("Set-Cookie", c) for c in query.get("raw", "").split("|") if c]
                if "next" in query:
                    return self.reply(302, b"", cookies + [("Location", query["next"])])
                return self.reply(200, b"cookies set\n", cookies + [("Content-Type", "text/plain")])
            return self.echo(body)
        if route == "compressed":
            # /compressed/ENC[,ENC...]: encoded whatever the client accepts.
            encodings = [e for e in arg.split(",") if e]
            data = TEXT
            for e in encodings:
                data = encode(data, e)
            return self.reply(200, data, [("Content-Type", "text/plain"), ("Content-Encoding", ", ".join(encodings))])
        if route == "negotiate":
            accepted = [e.strip().split(";")[0] for e in self.headers.get("Accept-Encoding", "").split(",")]
            for e in ("zstd", "br", "gzip", "deflate"):
                if e in accepted:
                    return self.reply(200, encode(TEXT, e), [("Content-Type", "text/plain"), ("Content-Encoding", e), ("Vary", "Accept-Encoding")])
            return self.reply(200, TEXT, [("Content-Type", "text/plain"), ("Vary", "Accept-Encoding")])
        if route == "bad-gzip":
            return self.reply(200, b"this is not gzip at all", [("Content-Encoding", "gzip")])
        if route == "bytes":
            return self.reply(200, pseudo_random(int(arg)), [("Content-Type", "application/octet-stream")])
        if route == "range":
            # /range/N: N bytes, honouring "Range: bytes=A-" (for -C).
            data = pseudo_random(int(arg))
            asked = self.headers.get("Range", "")
            if asked.startswith("bytes=") and asked.endswith("-"):
                start = int(asked[6:-1])
                if start >= len(data):
                    return self.reply(416, b"", [("Content-Range", "bytes */%d" % len(data))])
                return self.reply(206, data[start:], [("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))])
            return self.reply(200, data, [("Accept-Ranges", "bytes")])
        if route == "files":
            # /files/NAME: a download whose name is in the URL.
            return self.reply(200, b"the file called %s\n" % arg.encode(), [("Content-Type", "text/plain")])
        if route == "headers":
            return self.raw(
                b"HTTP/1.1 200 OK\r\n"
                b"Content-Type: text/plain\r\n"
                b"X-Mixed-Case: One\r\n"
                b"x-lower: two\r\n"
                b"X-Repeated: 1\r\n"
                b"X-Repeated: 2\r\n"
                b"Content-Length: 5\r\n"
                b"\r\n"
                b"head\n",
                close=False,
            )
        if route == "no-reason":
            return self.raw(b"HTTP/1.1 204 \r\nX-Reason: none\r\n\r\n", close=False)
        if route == "odd-status":
            return self.reply(299, b"odd\n", [("Content-Type", "text/plain")], reason="Somewhat Fine")
        if route == "informational":
            self.raw(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", close=False)
            return self.reply(200, b"after hints\n", [("Content-Type", "text/plain")])
        if route == "chunked":
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n", close=False)
            if self.command != "HEAD":
                for piece in (b"first chunk\n", b"second\n", b"x" * 3000 + b"\n"):
                    self.raw(b"%x\r\n%s\r\n" % (len(piece), piece), close=False)
                self.raw(b"0\r\n\r\n", close=False)
            return
        if route == "http10":
            return self.raw(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the connection closes\n")
        if route == "cut":
            # 10 of the 100 bytes promised, then the connection closes.
            return self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        if route == "cut-chunked":
            return self.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        if route == "empty":
            self.close_connection = True
            return
        if route == "garbage":
            return self.raw(b"this is not http\r\n\r\n")
        if route == "slow":
            time.sleep(int(query.get("ms", "3000")) / 1000)
            return self.echo(body)
        if route == "slow-body":
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nfirst half", close=False)
            time.sleep(int(query.get("ms", "3000")) / 1000)
            return self.raw(b"second one")
        if route == "flaky":
            # /flaky/KEY?code=N&times=T: N the first T times, then the echo.
            # Counted per client program, so both can run a case at once.
            key = (arg, self.headers.get("User-Agent", "").split("/")[0])
            with FLAKY_LOCK:
                seen = FLAKY.get(key, 0)
                FLAKY[key] = seen + 1
            if seen < int(query.get("times", "1")):
                code = int(query.get("code", "503"))
                return self.reply(code, b"try again\n", [("Content-Type", "text/plain")])
            return self.echo(body)
        if route == "auth":
            if self.headers.get("Authorization") is None:
                return self.reply(401, b"who are you?\n", [("WWW-Authenticate", 'Basic realm="diff"')])
            return self.echo(body)
        if route == "client-cert":
            cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
            subject = dict(x[0] for x in cert["subject"]) if cert else None
            return self.reply(200, json.dumps({"client": subject}, sort_keys=True).encode() + b"\n", [("Content-Type", "application/json")])
        return self.echo(body)

    def __getattr__(self, name):
        # Every method, including made-up ones, goes to handle_any.
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    # Both clients of several cases connect at once; socketserver's
    # backlog of 5 would refuse some (curl: exit 7) and make cases flaky.
    request_queue_size = 64
    tls = None

    def get_request(self):
        conn, addr = super().get_request()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        return conn, ("local", 0)

    def handle_error(self, request, client_address):
        pass  # a client that went away, or a refused TLS handshake


def main():
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    server = Server(path, Handler)
    args = sys.argv[2:]
    if args[:1] == ["--tls"]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args[1], args[2])
        context.set_alpn_protocols(["http/1.1"])
        if args[3:4] == ["--client-ca"]:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(args[4])
        server.tls = context
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
