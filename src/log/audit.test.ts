import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { createAuditSink, parseAuditTarget } from './audit.js';
import { createLogger, type LogEvent, onLogEvents } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'tether-audit-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function until<T>(f: () => T | undefined, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('parseAuditTarget', () => {
  test('accepts stdout, stderr, files and syslog addresses', () => {
    assert.deepEqual(parseAuditTarget('stdout'), { kind: 'stdout' });
    assert.deepEqual(parseAuditTarget('stderr'), { kind: 'stderr' });
    assert.deepEqual(parseAuditTarget('file:/var/log/tether/audit.log'), {
      kind: 'file',
      path: '/var/log/tether/audit.log',
    });
    assert.deepEqual(parseAuditTarget('file:///tmp/a.log'), { kind: 'file', path: '/tmp/a.log' });
    assert.deepEqual(parseAuditTarget('syslog://logs.example.com'), {
      kind: 'syslog',
      transport: 'udp',
      host: 'logs.example.com',
      port: 514,
      facility: 16,
    });
    assert.deepEqual(parseAuditTarget('syslog+tcp://127.0.0.1:6514?facility=auth'), {
      kind: 'syslog',
      transport: 'tcp',
      host: '127.0.0.1',
      port: 6514,
      facility: 4,
    });
    assert.deepEqual(parseAuditTarget('syslog+udp://[::1]:5514'), {
      kind: 'syslog',
      transport: 'udp',
      host: '::1',
      port: 5514,
      facility: 16,
    });
  });

  test('says what is wrong with a bad target', () => {
    assert.match(
      String(parseAuditTarget('elasticsearch://x')),
      /unknown audit target "elasticsearch:\/\/x"; use "stdout"/,
    );
    assert.match(String(parseAuditTarget('file:')), /has no path/);
    assert.match(String(parseAuditTarget('syslog://')), /has no host|invalid syslog address/);
    assert.match(String(parseAuditTarget('syslog://h:99999')), /invalid syslog address/);
    assert.match(String(parseAuditTarget('syslog://h?facility=mail2')), /unknown syslog facility "mail2"/);
    assert.match(String(parseAuditTarget('syslog://h?fac=auth')), /unknown syslog option "fac"/);
    assert.match(String(parseAuditTarget('syslog://h/path')), /takes only a host/);
    assert.throws(() => createAuditSink('nowhere'), /unknown audit target "nowhere"/);
  });
});

describe('audit log through createLogger', () => {
  test('every event record goes to the audit file, whatever the log level; secrets are redacted', async () => {
    const auditFile = join(dir, 'sub', 'audit.log');
    const mainFile = join(dir, 'main.log');
    const sink = createAuditSink(`file:${auditFile}`);
    const log = createLogger({ level: 'warn', destination: mainFile, pretty: false, audit: sink });
    const seen: LogEvent[] = [];
    const off = onLogEvents(log, (e) => seen.push(e));
    const slog = log.child({ tenant: 'acme', session: 'abcd1234' });
    slog.info(
      { event: 'session.opened', source: '127.0.0.1:5000', fingerprint: 'SHA256:x' },
      'session opened',
    );
    slog.info('plain info line, not an event');
    log.warn(
      { event: 'auth.failed', tenant: 'acme', reason: 'unknown tenant', token: 's3cret' },
      'login refused',
    );
    log.debug({ event: 'debug.event' }, 'below info: not audited');
    off();
    log.info({ event: 'tenant.removed', tenant: 'acme' }, 'tenant removed');
    await sink.close();

    const lines = readFileSync(auditFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.deepEqual(
      lines.map((l) => [l.event, l.level, l.audit]),
      [
        ['session.opened', 'info', true],
        ['auth.failed', 'warn', true],
        ['tenant.removed', 'info', true],
      ],
    );
    assert.equal(lines[0].tenant, 'acme');
    assert.equal(lines[0].session, 'abcd1234');
    assert.equal(lines[0].fingerprint, 'SHA256:x');
    assert.equal(lines[0].msg, 'session opened');
    assert.match(lines[0].time, /^\d{4}-\d\d-\d\dT/);
    assert.equal(lines[1].token, '[redacted]');
    assert.doesNotMatch(readFileSync(auditFile, 'utf8'), /s3cret/);

    // The main log keeps its own level: only the warning.
    const main = readFileSync(mainFile, 'utf8').trim().split('\n');
    assert.equal(main.length, 1);
    assert.match(main[0]!, /"event":"auth.failed"/);
    assert.doesNotMatch(main[0]!, /s3cret/);

    // Observers saw the two records logged while subscribed, with the child's fields.
    assert.deepEqual(
      seen.map((e) => [e.fields.event, e.levelName, e.bindings.tenant]),
      [
        ['session.opened', 'info', 'acme'],
        ['auth.failed', 'warn', undefined],
      ],
    );
  });

  test('a silent log still feeds the audit log', async () => {
    const auditFile = join(dir, 'silent.log');
    const sink = createAuditSink(`file:${auditFile}`);
    const log = createLogger({
      level: 'silent',
      destination: join(dir, 'silent-main.log'),
      pretty: false,
      audit: sink,
    });
    log.info({ event: 'tenant.added', tenant: 't1' }, 'tenant added');
    await sink.close();
    assert.match(readFileSync(auditFile, 'utf8'), /"event":"tenant.added"/);
    assert.equal(readFileSync(join(dir, 'silent-main.log'), 'utf8'), '');
  });
});

describe('syslog (RFC 5424)', () => {
  const rfc5424 = new RegExp(
    `^<(\\d+)>1 (\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z) ${hostname().replace(/[.]/g, '\\.')} tether (\\d+) ([!-~]{1,32}) - (\\{.*\\})$`,
  );

  test('over UDP: one datagram per event, severity from the level, MSGID = event', async () => {
    const server = dgram.createSocket('udp4');
    const got: string[] = [];
    server.on('message', (m) => got.push(m.toString()));
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    const { port } = server.address();
    const sink = createAuditSink(`syslog://127.0.0.1:${port}?facility=local3`);
    const log = createLogger({
      level: 'info',
      destination: join(dir, 'udp-main.log'),
      pretty: false,
      audit: sink,
    });
    log.child({ tenant: 'acme' }).info({ event: 'forward.granted', label: 'grp/web', port: 2201 }, 'granted');
    log.warn({ event: 'auth.failed', reason: 'key not registered', password: 'hunter2' }, 'refused');
    await until(() => (got.length >= 2 ? true : undefined));
    await sink.close();
    server.close();
    const [a, b] = got.map((g) => rfc5424.exec(g.trimEnd()));
    assert.ok(a && b, `not RFC 5424: ${got.join(' | ')}`);
    // PRI = facility * 8 + severity: local3 (19) → 152 + info (6) / warning (4).
    assert.equal(a[1], '158');
    assert.equal(b[1], '156');
    assert.equal(a[3], String(process.pid));
    assert.equal(a[4], 'forward.granted');
    assert.equal(b[4], 'auth.failed');
    const body = JSON.parse(a[5]!);
    assert.equal(body.tenant, 'acme');
    assert.equal(body.port, 2201);
    assert.equal(JSON.parse(b[5]!).password, '[redacted]');
  });

  test('over TCP: newline-framed messages', async () => {
    let text = '';
    const server = net.createServer((s) => s.on('data', (c: Buffer) => (text += c.toString())));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const { port } = server.address() as net.AddressInfo;
    const sink = createAuditSink(`syslog+tcp://127.0.0.1:${port}`);
    const log = createLogger({
      level: 'info',
      destination: join(dir, 'tcp-main.log'),
      pretty: false,
      audit: sink,
    });
    log.info({ event: 'tenant.added', tenant: 'a' }, 'added');
    log.info({ event: 'tenant.removed', tenant: 'a' }, 'removed');
    await until(() => (text.split('\n').length >= 3 ? true : undefined));
    await sink.close();
    server.close();
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0]!, /^<134>1 .* tether \d+ tenant\.added - \{.*"event":"tenant\.added".*\}$/);
    assert.match(lines[1]!, /^<134>1 .* tether \d+ tenant\.removed - /);
  });
});
