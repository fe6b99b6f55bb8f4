'use strict'

// An app traced by Datadog's Node.js tracer (dd-trace), for the trace-agent example.
//
//     node app.js SPANS RATE IDS_FILE [LINGER_SECS]
//
// Makes SPANS spans, in traces of five (an `http.request` and four
// `db.query` under it), RATE spans a second (0: as fast as it can), through
// dd-trace as any app would: the agent is wherever DD_TRACE_AGENT_URL says
// (`unix:///tmp/CoreFxPipe_trace-agent` for the pipe `trace-agent`). It
// writes the id of every span it made to IDS_FILE, one decimal id a line,
// and prints `app pid=… lang=nodejs tracer=dd-trace/5.132.0 made=N`.
//
// It then stays up LINGER_SECS (default 0) before it lets Node exit:
// dd-trace retries a payload the agent did not take once, 5 to 7.5 s later,
// on a timer that does not keep the process alive; an app that exits sooner
// loses that payload when the agent was down.
//
// dd-trace's warnings and errors are printed as `dd-trace WARN …` and
// `dd-trace ERROR …`, so that whoever runs the app can count them.

const fs = require('fs')

// dd-trace hands its log to a logger only in debug mode; from `warn` up is
// what an app's operator wants to see.
process.env.DD_TRACE_DEBUG ??= 'true'
process.env.DD_TRACE_LOG_LEVEL ??= 'warn'

const print = (level) => (message) => {
  const text = message instanceof Error ? (message.stack || message.message) : String(message)
  console.log(`dd-trace ${level} ${text}`)
}
const tracer = require('dd-trace').init({
  logger: { error: print('ERROR'), warn: print('WARN'), info: print('INFO'), debug: print('DEBUG') }
})
const version = require('dd-trace/package.json').version

const SPANS_PER_TRACE = 5

function main () {
  const [spans, rate, idsFile, linger = '0'] = process.argv.slice(2)
  if (idsFile === undefined) {
    console.error('usage: node app.js SPANS RATE IDS_FILE [LINGER_SECS]')
    process.exit(2)
  }
  const total = Number(spans)
  const perSecond = Number(rate)
  const ids = []
  const started = Date.now()

  const makeTrace = () => {
    const i = ids.length
    tracer.trace('http.request', { service: 'node-app', resource: `GET /items/${i % 97}`, type: 'web' }, (root) => {
      const children = Math.min(SPANS_PER_TRACE, total - i) - 1
      for (let c = 0; c < children; c++) {
        tracer.trace('db.query', { resource: 'SELECT item', type: 'sql' }, (child) => {
          ids.push(child.context().toSpanId())
        })
      }
      ids.push(root.context().toSpanId())
    })
  }

  // Between traces the event loop runs, so that dd-trace's flushes go out
  // while spans are still being made, as in a real app.
  const step = () => {
    while (ids.length < total) {
      makeTrace()
      if (perSecond > 0) {
        const ahead = started + (ids.length / perSecond) * 1000 - Date.now()
        if (ahead > 0) return setTimeout(step, ahead)
      }
    }
    fs.writeFileSync(idsFile, ids.map((id) => `${id}\n`).join(''))
    console.log(`app pid=${process.pid} lang=nodejs tracer=dd-trace/${version} made=${ids.length}`)
    setTimeout(() => {}, Number(linger) * 1000)
  }
  step()
}

main()
