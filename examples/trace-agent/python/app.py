"""An app traced by Datadog's Python tracer (ddtrace), for the trace-agent example.

    python app.py SPANS RATE IDS_FILE

Makes SPANS spans, in traces of five (an `http.request` and four
`db.query` under it), RATE spans a second (0: as fast as it can), through
ddtrace as any app would: the agent is wherever DD_TRACE_AGENT_URL says
(`unix:///tmp/CoreFxPipe_trace-agent` for the pipe `trace-agent`). It writes
the id of every span it made to IDS_FILE, one decimal id a line, and ends
with one line, `app pid=… lang=python tracer=ddtrace/4.16.0 made=N`.
ddtrace flushes what it holds at exit.

ddtrace's warnings and errors are printed as `ddtrace WARNING …` and
`ddtrace ERROR …`, so that whoever runs the app can count them.
"""

import logging
import os
import sys
import time

logging.basicConfig(level=logging.WARNING, format="ddtrace %(levelname)s %(name)s: %(message)s")

import ddtrace  # noqa: E402 (logging first, so that ddtrace's records go through it)
from ddtrace.trace import tracer  # noqa: E402

SPANS_PER_TRACE = 5


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: app.py SPANS RATE IDS_FILE")
    spans, rate, ids_file = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    ids = []
    started = time.monotonic()
    while len(ids) < spans:
        i = len(ids)
        with tracer.trace("http.request", service="python-app", resource="GET /items/%d" % (i % 97), span_type="web") as root:
            for _ in range(min(SPANS_PER_TRACE, spans - i) - 1):
                with tracer.trace("db.query", resource="SELECT item", span_type="sql") as child:
                    ids.append(child.span_id)
            ids.append(root.span_id)
        if rate > 0:
            ahead = started + len(ids) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    with open(ids_file, "w") as out:
        out.write("".join("%d\n" % span_id for span_id in ids))
    print("app pid=%d lang=python tracer=ddtrace/%s made=%d" % (os.getpid(), ddtrace.__version__, len(ids)), flush=True)


if __name__ == "__main__":
    main()
