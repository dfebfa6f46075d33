import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ts from 'typescript';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { BIN, ROOT, run, tempDir } from '../helpers/util.js';

const PAGE = 'docs/troubleshooting.md';

/** The messages of the page: every line of the fenced block after a `Message:` line. */
function documentedMessages(): Array<{ line: number; text: string }> {
  const lines = readFileSync(join(ROOT, PAGE), 'utf8').split('\n');
  const out: Array<{ line: number; text: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== 'Message:') continue;
    let j = i + 1;
    while (j < lines.length && !lines[j]!.startsWith('```')) j++;
    for (j++; j < lines.length && !lines[j]!.startsWith('```'); j++)
      if (lines[j]!.trim()) out.push({ line: j + 1, text: lines[j]! });
  }
  return out;
}

/** A documented message as a pattern: `<placeholder>` and `…` match anything. */
function messagePattern(text: string): RegExp {
  const parts = text.split(/<[^>]+>|…/).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('.+?')}$`);
}

/**
 * Every piece of literal text in src/ (string literals, template literal parts, and literals
 * joined with `+`), as chunks between interpolations: a documented message's fixed parts must
 * each be found inside one chunk.
 */
function sourceChunks(): string[] {
  const chunks: string[] = [];
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) files.push(p);
    }
  };
  walk(join(ROOT, 'src'));
  /** Literal text of an expression; `null` breaks the chunk (an interpolation). */
  const pieces = (n: ts.Node): Array<string | null> => {
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) return [n.text];
    if (ts.isTemplateExpression(n))
      return [n.head.text, ...n.templateSpans.flatMap((s) => [null, s.literal.text])];
    if (ts.isParenthesizedExpression(n)) return pieces(n.expression);
    if (ts.isBinaryExpression(n) && n.operatorToken.kind === ts.SyntaxKind.PlusToken)
      return [...pieces(n.left), ...pieces(n.right)];
    return [null];
  };
  for (const f of files) {
    const src = ts.createSourceFile(f, readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (n: ts.Node) => {
      if (
        ts.isStringLiteral(n) ||
        ts.isNoSubstitutionTemplateLiteral(n) ||
        ts.isTemplateExpression(n) ||
        (ts.isBinaryExpression(n) && n.operatorToken.kind === ts.SyntaxKind.PlusToken)
      ) {
        let cur = '';
        for (const p of pieces(n)) {
          if (p === null) {
            chunks.push(cur);
            cur = '';
          } else cur += p;
        }
        chunks.push(cur);
      }
      ts.forEachChild(n, visit);
    };
    visit(src);
  }
  return chunks.filter((c) => c.length > 0);
}

/** Config problems are joined with "; " before the next key path. */
const PROBLEMS = /; (?=[a-z_]+(?:\.[\w-]+)*: )/;
const KEY_PATH = /^[a-z_]+(\.[a-z_]+)*\.?$/;
const trimEnds = (s: string) => s.replace(/^[\s:"]+|[\s:"]+$/g, '');

describe(`${PAGE}: every message is one Tether prints`, () => {
  const messages = documentedMessages();
  const patterns = messages.map((m) => messagePattern(m.text.replace(/^tether: /, '')));
  /** The page documents this printed line (with or without the `tether: ` prefix). */
  const documented = (printed: string) => {
    const line = printed.trim().replace(/^tether: /, '');
    return patterns.some((p) => p.test(line));
  };

  test('the page lists the common errors', () => {
    assert.ok(messages.length >= 30, `only ${messages.length} messages`);
    const all = messages.map((m) => m.text).join('\n');
    for (const must of [
      'refused the key',
      'host key mismatch',
      'quota exceeded',
      'is not a repository URI',
      'cannot reach the gateway at',
      'cannot reach the gateway admin API',
    ])
      assert.ok(all.includes(must), `no message with "${must}"`);
  });

  test("each message's fixed text is in the source (src/**/*.ts)", () => {
    const chunks = sourceChunks();
    for (const m of messages) {
      const fragments = m.text.replace(/^tether: /, '').split(/<[^>]+>|…/);
      for (const raw of fragments) {
        let frag = trimEnds(raw);
        if (!/[a-zA-Z]/.test(frag) || KEY_PATH.test(frag)) continue;
        // "<file>: store: use …": a config key path before the message.
        const keyed = /^([a-z_]+(\.[a-z_]+)*): (.*)$/.exec(frag);
        const found = (f: string) => chunks.some((c) => c.includes(f));
        if (!found(frag) && keyed) frag = trimEnds(keyed[3]!);
        // "enrollment refused: <reason>": a message built from two, each must be in the source.
        const parts = found(frag) ? [frag] : frag.split(': ').map(trimEnds);
        for (const part of parts)
          assert.ok(
            !/[a-zA-Z]/.test(part) || found(part),
            `${PAGE}:${m.line}: "${part}" is in no string of src/ (message: ${m.text})`,
          );
      }
    }
  });

  describe('triggered for real: what the binary prints is on the page', () => {
    let gw: TestGateway;
    const dir = tempDir('tether-docs-trouble-');
    const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
      run(process.execPath, [BIN, ...args], { env: { ...process.env, TETHER_DATA_DIR: dir, ...env } });
    /** The error: the last line on stderr (a connector may say "trusting … on first use" before). */
    const stderrLine = (r: { stderr: string }) => r.stderr.trim().split('\n').at(-1) ?? '';

    before(async () => {
      gw = await startGateway();
    });
    after(async () => {
      await gw?.stop();
    });

    test('admin CLI: unreachable API, no token, wrong token', async () => {
      const r1 = await cli(['tenants', 'list'], {
        TETHER_ADMIN_URL: 'http://127.0.0.1:1',
        TETHER_ADMIN_TOKEN: 'x',
      });
      assert.equal(r1.code, 5);
      assert.ok(documented(stderrLine(r1)), stderrLine(r1));
      const r2 = await cli(['tenants', 'list'], { TETHER_ADMIN_URL: gw.adminUrl });
      assert.ok(documented(stderrLine(r2)), stderrLine(r2));
      const r3 = await gw.tether(['tenants', 'list'], { env: { TETHER_ADMIN_TOKEN: 'wrong' } });
      assert.equal(r3.code, 6);
      assert.ok(documented(stderrLine(r3)), stderrLine(r3));
    });

    test('tenants: exists, does not exist, bad id, bad quota', async () => {
      await gw.addTenant('acme');
      for (const args of [
        ['tenants', 'add', 'acme'],
        ['tenants', 'list', 'nobody'],
        ['tenants', 'add', 'Bad!'],
        ['tenants', 'change', '5000', 'acme'],
      ]) {
        const r = await gw.tether(args);
        assert.notEqual(r.code, 0);
        assert.ok(documented(stderrLine(r)), `${args.join(' ')}: ${stderrLine(r)}`);
      }
    });

    test('gateway.yaml errors and a port in use', async () => {
      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, 'tunel: {}\nstore: mysql\nforwards: { ports: "9-2" }\n');
      const r = await cli(['gateway', '-c', bad]);
      assert.equal(r.code, 2);
      // One line, problems separated by "; ": each is documented on its own.
      const [file, ...rest] = stderrLine(r)
        .replace(/^tether: /, '')
        .split(': ');
      assert.equal(file, bad);
      for (const problem of rest.join(': ').split(PROBLEMS))
        assert.ok(documented(`${bad}: ${problem}`), `${bad}: ${problem}`);

      const holder = createServer();
      await new Promise<void>((res) => holder.listen(0, '127.0.0.1', res));
      const port = (holder.address() as { port: number }).port;
      const busy = join(dir, 'busy.yaml');
      writeFileSync(busy, `data_dir: ${join(dir, 'busy-data')}\ntunnel: { listen: "127.0.0.1:${port}" }\n`);
      const r2 = await cli(['gateway', '-c', busy]);
      holder.close();
      assert.notEqual(r2.code, 0);
      assert.match(
        stderrLine(r2),
        messagePattern('tether: listen EADDRINUSE: address already in use <host>:<port>'),
      );
      assert.ok(readFileSync(join(ROOT, PAGE), 'utf8').includes('listen EADDRINUSE: address already in use'));
    });

    test('connector: bad URI, key refused, host key mismatch, not running', async () => {
      const uriFile = join(dir, 'uri.yaml');
      writeFileSync(
        uriFile,
        'gateway: "127.0.0.1:1"\ntenant: acme\nssh_key: ./k\nrepositories:\n  g:\n    a: "ftp://x"\n    b: "webdav://x"\n    c: "tcp://db"\n    d: "smb://u:p@x"\n',
      );
      const r1 = await cli(['connector', 'config', '-c', uriFile]);
      assert.equal(r1.code, 2);
      const [file, ...rest] = stderrLine(r1)
        .replace(/^tether: /, '')
        .split(': ');
      const problems = rest.join(': ').split(PROBLEMS);
      assert.equal(problems.length, 4, stderrLine(r1));
      for (const p of problems) assert.ok(documented(`${file}: ${p}`), `${file}: ${p}`);

      // A key the gateway does not know.
      const cdir = tempDir('tether-docs-conn-');
      const init = await cli([
        'connector',
        'init',
        '-c',
        join(cdir, 'connect.yaml'),
        '--gateway',
        `127.0.0.1:${gw.sshPort}`,
        '--tenant',
        'acme',
      ]);
      assert.equal(init.code, 0, init.stderr);
      const env = { TETHER_STATE_DIR: join(cdir, 'state') };
      const r2 = await cli(['connector', 'ping', '-c', join(cdir, 'connect.yaml')], env);
      assert.notEqual(r2.code, 0);
      assert.ok(documented(stderrLine(r2)), stderrLine(r2));

      const r3 = await cli(['connector', 'status', '-c', join(cdir, 'connect.yaml')], env);
      assert.equal(r3.code, 3);
      assert.ok(documented(stderrLine(r3)), stderrLine(r3));

      // A pinned fingerprint that is not the gateway's.
      const pinned = join(cdir, 'pinned.yaml');
      writeFileSync(
        pinned,
        `${readFileSync(join(cdir, 'connect.yaml'), 'utf8')}\ngateway_fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"\n`,
      );
      const r4 = await cli(['connector', 'ping', '-c', pinned], env);
      assert.equal(r4.code, 6);
      assert.ok(documented(stderrLine(r4)), stderrLine(r4));

      const r5 = await cli(['connector', 'ping', '-c', join(cdir, 'connect.yaml')], {
        ...env,
        TETHER_STATE_DIR: join(cdir, 'state2'),
      });
      assert.ok(r5.stderr.includes('refused the key'), r5.stderr);
    });
  });
});
