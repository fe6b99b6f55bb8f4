"""Python's http.client uploads a body to a Unix socket, as a real client
that sends its whole body before it reads the answer.

    python3 post_over_limit.py SOCKET PATH BYTES [chunked]

Prints "status CODE BODY" for the answer, or "error NAME MESSAGE" (and
exits 1) when the answer was lost, e.g. to a broken pipe.
"""

import http.client
import socket
import sys


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.socket_path)


def main(path, target, size, chunked):
    conn = UnixConnection(path)
    piece = b"x" * 65536
    try:
        if chunked:
            def pieces():
                left = size
                while left > 0:
                    n = min(left, len(piece))
                    left -= n
                    yield piece[:n]

            conn.request("POST", target, body=pieces(), encode_chunked=True)
        else:
            conn.request("POST", target, body=b"x" * size)
        res = conn.getresponse()
        print("status", res.status, res.read()[:80].decode(errors="replace").strip(), flush=True)
    except Exception as e:  # what a real caller would see
        print("error", type(e).__name__, e, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "chunked")
