// Destination servers for the benchmark, in their own process so that their CPU time is not
// the orchestrator's: a TCP echo server, a small HTTP server and a byte source.
// Prints one JSON line with the ports: {"echo":…,"http":…,"source":…}
import http from 'node:http';
import net from 'node:net';

const host = process.argv[2] ?? '127.0.0.1';

const echo = net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => {});
  s.pipe(s);
});

// A fixed small answer, like a health or metadata endpoint behind the tunnel.
const body = Buffer.from('{"status":"ok","service":"bench"}\n');
const web = http.createServer({ keepAliveTimeout: 60_000, noDelay: true }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});

// "N\n" in, N bytes out (then EOF), respecting backpressure.
const chunk = Buffer.alloc(64 * 1024, 0x61);
const source = net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => {});
  let head = '';
  const onData = (c) => {
    head += c.toString('latin1');
    const nl = head.indexOf('\n');
    if (nl < 0) return;
    s.off('data', onData);
    let left = Number(head.slice(0, nl));
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  };
  s.on('data', onData);
});

const listen = (srv) =>
  new Promise((r) => srv.listen({ host, port: 0, backlog: 4096 }, () => r(srv.address().port)));
const ports = { echo: await listen(echo), http: await listen(web), source: await listen(source) };
process.stdout.write(`${JSON.stringify(ports)}\n`);
process.on('SIGTERM', () => process.exit(0));
