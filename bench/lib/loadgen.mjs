// Load generators for the benchmark, run as a child process (so the orchestrator stays idle).
// Each mode prints one JSON line with its result.
//   pingpong <host> <port> <rate/s> <seconds> <bytes>   fixed-rate request/response on one connection
//   connrate <host:port,…> <seconds> <concurrency>      connect, 1-byte echo, close, in a loop
//   http <host> <port> <seconds> <connections>          keep-alive GET, one request in flight per connection
//   slowread <host> <port> <bytes> <bytes/s>            download from a byte source at a limited rate
import net from 'node:net';

const [mode, ...a] = process.argv.slice(2);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const now = () => Number(process.hrtime.bigint()) / 1e6;

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function connect(host, port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

async function pingpong(host, port, rate, seconds, size) {
  const s = await connect(host, port);
  const msg = Buffer.alloc(size, 0x62);
  const interval = 1000 / rate;
  const lat = [];
  let got = 0;
  let sentAt = 0;
  let inFlight = false;
  let sent = 0;
  const t0 = now();
  const end = t0 + seconds * 1000;
  let late = 0;
  await new Promise((resolve, reject) => {
    s.on('error', reject);
    const tick = () => {
      if (inFlight) return;
      const t = now();
      if (t >= end) {
        resolve();
        return;
      }
      const due = t0 + sent * interval;
      if (t < due) {
        setTimeout(tick, Math.max(0, due - t - 0.2));
        return;
      }
      if (t - due > interval) late++;
      inFlight = true;
      sent++;
      sentAt = t;
      s.write(msg);
    };
    s.on('data', (c) => {
      got += c.length;
      if (got >= size) {
        got -= size;
        lat.push(now() - sentAt);
        inFlight = false;
        tick();
      }
    });
    tick();
  });
  s.destroy();
  lat.sort((x, y) => x - y);
  out({
    requests: lat.length,
    rate: lat.length / seconds,
    late_sends: late,
    p50_ms: percentile(lat, 50),
    p99_ms: percentile(lat, 99),
    max_ms: lat[lat.length - 1] ?? null,
  });
}

async function connrate(targets, seconds, concurrency) {
  const addrs = targets.split(',').map((t) => {
    const i = t.lastIndexOf(':');
    return { host: t.slice(0, i), port: Number(t.slice(i + 1)) };
  });
  const end = now() + seconds * 1000;
  let ok = 0;
  let errors = 0;
  let n = 0;
  const lat = [];
  const one = (addr) =>
    new Promise((resolve) => {
      const t = now();
      const s = net.connect({ host: addr.host, port: addr.port, noDelay: true });
      let done = false;
      const finish = (good) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (good) {
          ok++;
          lat.push(now() - t);
        } else errors++;
        resolve();
      };
      const timer = setTimeout(() => {
        s.destroy();
        finish(false);
      }, 10_000);
      let echoed = false;
      s.on('error', () => finish(false));
      s.once('connect', () => s.write('x'));
      s.once('data', () => {
        echoed = true;
        s.end();
        s.resume();
      });
      s.once('close', () => finish(echoed));
    });
  const worker = async () => {
    while (now() < end) await one(addrs[n++ % addrs.length]);
  };
  const t0 = now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const el = (now() - t0) / 1000;
  lat.sort((x, y) => x - y);
  out({ connections: ok, errors, per_s: ok / el, p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99) });
}

async function httpLoad(host, port, seconds, connections) {
  const req = Buffer.from(`GET /bench HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: tether-bench\r\n\r\n`);
  const end = now() + seconds * 1000;
  let ok = 0;
  let errors = 0;
  const lat = [];
  const t0 = now();
  const conn = async () => {
    const s = await connect(host, port);
    let buf = Buffer.alloc(0);
    let sentAt = 0;
    await new Promise((resolve) => {
      const send = () => {
        if (now() >= end) {
          s.destroy();
          resolve();
          return;
        }
        sentAt = now();
        s.write(req);
      };
      s.on('error', () => {
        errors++;
        resolve();
      });
      s.on('close', resolve);
      s.on('data', (c) => {
        buf = buf.length ? Buffer.concat([buf, c]) : c;
        for (;;) {
          const h = buf.indexOf('\r\n\r\n');
          if (h < 0) return;
          const head = buf.subarray(0, h).toString('latin1');
          const m = /content-length:\s*(\d+)/i.exec(head);
          const total = h + 4 + (m ? Number(m[1]) : 0);
          if (buf.length < total) return;
          if (head.startsWith('HTTP/1.1 200')) {
            ok++;
            lat.push(now() - sentAt);
          } else errors++;
          buf = buf.subarray(total);
          send();
        }
      });
      send();
    });
  };
  await Promise.all(Array.from({ length: connections }, () => conn().catch(() => errors++)));
  const el = (now() - t0) / 1000;
  lat.sort((x, y) => x - y);
  out({ requests: ok, errors, rps: ok / el, p50_ms: percentile(lat, 50), p99_ms: percentile(lat, 99) });
}

async function slowread(host, port, bytes, rate) {
  const s = await connect(host, port);
  s.write(`${bytes}\n`);
  const t0 = now();
  let got = 0;
  await new Promise((resolve, reject) => {
    s.on('error', reject);
    s.on('data', (c) => {
      got += c.length;
      const ahead = got / rate - (now() - t0) / 1000;
      if (ahead > 0.005) {
        s.pause();
        setTimeout(() => s.resume(), ahead * 1000);
      }
    });
    s.on('end', resolve);
  });
  const el = (now() - t0) / 1000;
  out({ bytes: got, seconds: el, rate: got / el });
}

const n = Number;
switch (mode) {
  case 'pingpong':
    await pingpong(a[0], n(a[1]), n(a[2]), n(a[3]), n(a[4]));
    break;
  case 'connrate':
    await connrate(a[0], n(a[1]), n(a[2]));
    break;
  case 'http':
    await httpLoad(a[0], n(a[1]), n(a[2]), n(a[3]));
    break;
  case 'slowread':
    await slowread(a[0], n(a[1]), n(a[2]), n(a[3]));
    break;
  default:
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
}
process.exit(0);
