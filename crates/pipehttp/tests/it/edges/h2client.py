"""HTTP/2 clients that misbehave on purpose, built on Python's h2 (and its
hyperframe and hpack) so that the frames on the wire are made by a library
no one here wrote. The edge tests run it against a pipehttp server's Unix
socket and read what it reports.

    python3 h2client.py SOCKET MODE [ARGS] [--max SECONDS] [--authority HOST]

Modes:
    zero-window PATH           GET PATH with every stream's window at 0, so
                               the server can send no DATA; report until the
                               server closes the connection
    open-headers [--trickle]   a HEADERS frame without END_HEADERS, then no
                               more (with --trickle, a CONTINUATION of one
                               byte every half second, never the last)
    trickle-body PATH N GAP [--again]
                               POST PATH with content-length N, one byte of
                               body every GAP seconds; with --again, a new
                               such stream each time one ends (reported as
                               "stream ID", or "new-stream-refused" once the
                               connection may take no more)
    echo-flood STREAMS SIZE    STREAMS uploads to POST /echo of SIZE bytes
                               each, sent as fast as the server's windows
                               allow, whose answers are never read (no
                               WINDOW_UPDATE is ever sent for them); runs
                               until killed or --max
    held-window STREAMS SIZE   echo-flood until nothing more can be sent
                               (the server's handlers hold the window), then
                               one more POST /echo of 1000 bytes on the same
                               connection, sent as the window allows
    get PATH                   one ordinary GET, answer read in full

It prints one line per event, flushed: SECONDS EVENT [DETAILS], where
SECONDS counts from the connect. Events: connected, setting NAME VALUE (each
setting the server announces), response STREAM STATUS,
headers-sent, data STREAM BYTES, ended STREAM, reset STREAM CODE, goaway CODE LAST_STREAM,
sent BYTES, stalled BYTES, closed, timeout (--max ran out, default 60 s).
"""

import select
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import hyperframe.frame

START = time.monotonic()


def say(*words):
    print(f"{time.monotonic() - START:.3f}", *words, flush=True)


def connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    say("connected")
    return sock


def client(initial_window=None):
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    if initial_window is not None:
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window},
        )
    conn.initiate_connection()
    return conn


AUTHORITY = ["localhost"]


def request_headers(method, path, extra=()):
    return [
        (":method", method),
        (":scheme", "http"),
        (":authority", AUTHORITY[0]),
        (":path", path),
        *extra,
    ]


def report(event):
    """Prints an h2 event; returns True when the connection is over."""
    if isinstance(event, h2.events.ResponseReceived):
        status = dict(event.headers).get(":status", "?")
        say("response", event.stream_id, status)
    elif isinstance(event, h2.events.DataReceived):
        say("data", event.stream_id, len(event.data))
    elif isinstance(event, h2.events.StreamEnded):
        say("ended", event.stream_id)
    elif isinstance(event, h2.events.StreamReset):
        say("reset", event.stream_id, int(event.error_code))
    elif isinstance(event, h2.events.ConnectionTerminated):
        say("goaway", int(event.error_code), event.last_stream_id)
    elif isinstance(event, h2.events.RemoteSettingsChanged):
        for code, changed in event.changed_settings.items():
            say("setting", h2.settings.SettingCodes(code).name, changed.new_value)
    return False


class Over(Exception):
    """The connection is over: the server closed it, or --max ran out."""


def receive(sock, deadline, wait):
    """Bytes the server sent within `wait` seconds (b"" if none came).
    Raises Over, after saying "closed" or "timeout", when it is over."""
    left = deadline - time.monotonic()
    if left <= 0:
        say("timeout")
        raise Over
    ready, _, _ = select.select([sock], [], [], max(0.0, min(wait, left)))
    if not ready:
        return b""
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        data = b""
    if not data:
        say("closed")
        raise Over
    return data


def pump(sock, conn, deadline, on_tick=None, tick=None, on_event=None):
    """Reads and reports until the server closes or the deadline passes;
    `on_tick` runs every `tick` seconds (to trickle)."""
    next_tick = time.monotonic() + tick if tick else None
    pending = b""
    goaway = False
    while True:
        wait = (deadline if next_tick is None else next_tick) - time.monotonic()
        pending += receive(sock, deadline, wait)
        # Frame by frame, so that the events of the frames before one h2
        # refuses are still reported: h2 takes the connection as closed once
        # a GOAWAY comes, and refuses the PING a graceful shutdown sends
        # after its first GOAWAY (RFC 9113, 6.8), which other clients take.
        while len(pending) >= 9:
            end = 9 + int.from_bytes(pending[:3], "big")
            if len(pending) < end:
                break
            frame, pending = pending[:end], pending[end:]
            try:
                events = conn.receive_data(frame)
            except h2.exceptions.ProtocolError:
                if not goaway:
                    raise
                say("ignored-after-goaway", frame[3])
                continue
            for event in events:
                report(event)
                goaway |= isinstance(event, h2.events.ConnectionTerminated)
                if on_event:
                    on_event(event)
        send(sock, conn.data_to_send())
        if next_tick is not None and time.monotonic() >= next_tick:
            next_tick += tick
            on_tick()
            send(sock, conn.data_to_send())


def send(sock, data):
    if not data:
        return
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def zero_window(sock, deadline, path):
    conn = client(initial_window=0)
    conn.send_headers(1, request_headers("GET", path), end_stream=True)
    send(sock, conn.data_to_send())
    pump(sock, conn, deadline)


def open_headers(sock, deadline, trickle):
    # Made frame by frame: h2 itself never sends a header block it has not
    # finished. Once a header block has begun, the only frame the peer may
    # send is its CONTINUATION, so the server's SETTINGS is waited for and
    # acknowledged first.
    out = hyperframe.frame
    send(sock, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + out.SettingsFrame(0).serialize())
    buffered = b""
    block = hpack.Encoder().encode(
        request_headers("GET", "/test", [("x-pad", "a" * 1000)])
    )
    first, rest = block[:8], block[8:]
    began = False

    def next_frames():
        nonlocal buffered
        frames = []
        while len(buffered) >= 9:
            frame, length = out.Frame.parse_frame_header(memoryview(buffered[:9]))
            if len(buffered) < 9 + length:
                break
            frame.parse_body(memoryview(buffered[9 : 9 + length]))
            buffered = buffered[9 + length :]
            frames.append(frame)
        return frames

    while True:
        data = receive(sock, deadline, 0.5)
        if data:
            buffered += data
            for frame in next_frames():
                if isinstance(frame, out.GoAwayFrame):
                    say("goaway", frame.error_code, frame.last_stream_id)
                elif isinstance(frame, out.SettingsFrame) and "ACK" not in frame.flags and not began:
                    headers = out.HeadersFrame(1)
                    headers.data = first
                    headers.flags.add("END_STREAM")  # END_HEADERS left out on purpose
                    send(sock, out.SettingsFrame(0, flags=["ACK"]).serialize() + headers.serialize())
                    began = True
                    say("headers-sent")
        elif began and trickle and rest:
            # One more byte of the header block, never the last one.
            if len(rest) > 1:
                piece = out.ContinuationFrame(1)
                piece.data, rest = rest[:1], rest[1:]
                send(sock, piece.serialize())


def trickle_body(sock, deadline, path, length, gap, again=False):
    conn = client()
    stream = [1]
    left = [length]
    done = [False]

    def open_stream():
        conn.send_headers(
            stream[0],
            request_headers("POST", path, [("content-length", str(length))]),
        )
        left[0] = length
        done[0] = False

    open_stream()
    send(sock, conn.data_to_send())

    def one_byte():
        if done[0] and again:
            stream[0] += 2
            try:
                open_stream()
            except Exception as e:  # GOAWAY: no new stream may be opened
                say("new-stream-refused", type(e).__name__)
                return
            say("stream", stream[0])
        if left[0] > 0 and not done[0]:
            try:
                conn.send_data(stream[0], b"x", end_stream=left[0] == 1)
            except Exception as e:  # the stream was reset or closed
                say("send-refused", type(e).__name__)
                done[0] = True
                return
            left[0] -= 1
            say("sent", length - left[0])

    def on_event(event):
        if isinstance(event, (h2.events.StreamReset, h2.events.StreamEnded)):
            if event.stream_id == stream[0]:
                done[0] = True
        if isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    pump(sock, conn, deadline, on_tick=one_byte, tick=gap, on_event=on_event)


def echo_flood(sock, deadline, streams, size, late=False):
    # Our window for the answers stays as small as the server is allowed to
    # fill once: what it cannot send, it must hold or stop reading.
    conn = client()
    ids = []
    for i in range(streams):
        stream = 1 + 2 * i
        conn.send_headers(
            stream,
            request_headers(
                "POST",
                "/echo",
                [("content-length", str(size)), ("content-type", "application/octet-stream")],
            ),
        )
        ids.append(stream)
    send(sock, conn.data_to_send())
    left = {stream: size for stream in ids}
    total = 0
    last_progress = time.monotonic()
    said_stalled = False
    chunk = b"x" * 16384
    while True:
        now = time.monotonic()
        # Send what the windows allow.
        progressed = False
        for stream in ids:
            while left[stream] > 0:
                try:
                    window = conn.local_flow_control_window(stream)
                except Exception:
                    break
                n = min(window, left[stream], len(chunk), conn.max_outbound_frame_size)
                if n <= 0:
                    break
                conn.send_data(stream, chunk[:n], end_stream=left[stream] == n)
                left[stream] -= n
                total += n
                progressed = True
        pending = conn.data_to_send()
        if pending:
            send(sock, pending)
        if progressed:
            last_progress = now
            said_stalled = False
        elif not said_stalled and now - last_progress > 1.0:
            say("stalled", total)
            said_stalled = True
            if late:
                # One more upload, which only the server's window keeps
                # from being sent.
                late = False
                stream = 1 + 2 * len(ids)
                conn.send_headers(
                    stream,
                    request_headers("POST", "/echo", [("content-length", "1000")]),
                )
                ids.append(stream)
                left[stream] = 1000
                say("late-stream", stream)
        data = receive(sock, deadline, 0.2)
        if data:
            for event in conn.receive_data(data):
                # Answers are received but never acknowledged: the server's
                # windows for them never reopen.
                if not isinstance(event, h2.events.DataReceived):
                    report(event)
            send(sock, conn.data_to_send())


def get(sock, deadline, path):
    conn = client()
    conn.send_headers(1, request_headers("GET", path), end_stream=True)
    send(sock, conn.data_to_send())
    body = [0]

    def on_event(event):
        if isinstance(event, h2.events.DataReceived):
            body[0] += len(event.data)
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        if isinstance(event, h2.events.StreamEnded):
            say("body", body[0])
            raise SystemExit(0)

    pump(sock, conn, deadline, on_event=on_event)


def main(argv):
    max_seconds = 60.0
    if "--max" in argv:
        i = argv.index("--max")
        max_seconds = float(argv[i + 1])
        del argv[i : i + 2]
    if "--authority" in argv:
        i = argv.index("--authority")
        AUTHORITY[0] = argv[i + 1]
        del argv[i : i + 2]
    if len(argv) < 2:
        sys.exit(__doc__)
    path, mode, args = argv[0], argv[1], argv[2:]
    sock = connect(path)
    deadline = START + max_seconds
    try:
        run(sock, deadline, mode, args)
    except Over:
        pass


def run(sock, deadline, mode, args):
    if mode == "zero-window":
        zero_window(sock, deadline, args[0])
    elif mode == "open-headers":
        open_headers(sock, deadline, "--trickle" in args)
    elif mode == "trickle-body":
        trickle_body(
            sock, deadline, args[0], int(args[1]), float(args[2]), "--again" in args[3:]
        )
    elif mode == "echo-flood":
        echo_flood(sock, deadline, int(args[0]), int(args[1]))
    elif mode == "held-window":
        echo_flood(sock, deadline, int(args[0]), int(args[1]), late=True)
    elif mode == "get":
        get(sock, deadline, args[0])
    else:
        sys.exit(f"unknown mode {mode!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
