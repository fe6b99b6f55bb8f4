// Node's http client uploads a body to a Unix socket, writing all of it
// before it looks at the answer, as most upload code does.
//
//     node post_over_limit.js SOCKET PATH BYTES [chunked]
//
// Prints "status CODE BODY" for the answer, or "error CODE MESSAGE" (and
// exits 1) when the answer was lost, e.g. to EPIPE or ECONNRESET.
'use strict';
const http = require('http');

const [socketPath, path, bytes, mode] = process.argv.slice(2);
const size = Number(bytes);
const headers = mode === 'chunked' ? {} : { 'content-length': String(size) };
let answered = false;
const req = http.request({ socketPath, method: 'POST', path, headers }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => { body += d; });
  res.on('end', () => {
    answered = true;
    console.log(`status ${res.statusCode} ${body.slice(0, 80).trim()}`);
  });
});
req.setTimeout(30000, () => req.destroy(new Error('no answer in 30 s')));
req.on('error', (e) => {
  if (!answered) {
    console.log(`error ${e.code || 'none'} ${e.message}`);
    process.exitCode = 1;
  }
});
const piece = Buffer.alloc(65536, 'x');
let left = size;
function pump() {
  while (left > 0) {
    const n = Math.min(left, piece.length);
    left -= n;
    if (!req.write(n === piece.length ? piece : piece.subarray(0, n))) {
      req.once('drain', pump);
      return;
    }
  }
  req.end();
}
pump();
