import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  CATALOG,
  type CatalogEntry,
  type ErrorCode,
  exitForStatus,
  isErrorCode,
  TetherError,
  toErrorCode,
} from './index.js';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..');
const DOC = join(SRC, '..', 'docs', 'errors.md');

/** Functions whose arguments carry an error code (an ALL_CAPS string literal among them is one). */
const CODE_TAKERS = [
  'new TetherError',
  'isTetherError',
  'toErrorCode',
  'keyError',
  'fail',
  'refuse',
  'replyError',
  'sendError',
  'sendRawError',
];
const CODE_LITERAL = /'([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)'/g;
/** Node's and OpenSSL's own codes (`Object.assign(new Error(…), { code: 'ETIMEDOUT' })`) are not ours. */
const NODE_CODE = /^(E[A-Z]+|ERR_[A-Z0-9_]+)$/;

/** The text of a call's argument list starting at `open` (the "("), skipping string contents. */
function argumentsAt(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '"' || c === '`') {
      const close = text.indexOf(c, i + 1);
      if (close < 0) break;
      i = close;
    } else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return text.slice(open, i + 1);
  }
  return text.slice(open);
}

interface Use {
  code: string;
  where: string;
}

/** Every error code a source text names in a code position. */
export function codesIn(text: string, file: string): Use[] {
  const uses: Use[] = [];
  const line = (index: number) => `${file}:${text.slice(0, index).split('\n').length}`;
  for (const taker of CODE_TAKERS) {
    const re = new RegExp(`(?<![\\w.])${taker.replace(' ', '\\s+')}\\s*\\(`, 'g');
    for (const m of text.matchAll(re)) {
      const args = argumentsAt(text, m.index + m[0].length - 1);
      for (const c of args.matchAll(CODE_LITERAL))
        if (!NODE_CODE.test(c[1] as string)) uses.push({ code: c[1] as string, where: line(m.index) });
    }
    // methods too: this.fail(…), this.door.fail(…)
    if (taker === 'fail' || taker === 'refuse') {
      for (const m of text.matchAll(new RegExp(`\\.${taker}\\s*\\(`, 'g'))) {
        const args = argumentsAt(text, m.index + m[0].length - 1);
        for (const c of args.matchAll(CODE_LITERAL))
          uses.push({ code: c[1] as string, where: line(m.index) });
      }
    }
  }
  // object fields and defaults: { code: 'X' } (control messages, decisions, HTTP answers, audit),
  // code = 'X', code: ErrorCode = 'X', and the fallback in `isTetherError(err) ? err.code : 'X'`
  for (const m of text.matchAll(
    /\b(?:code\??\s*(?::\s*(?:ErrorCode\s*=\s*)?|=\s*)|\.code\s*:\s*)'([A-Z][A-Z0-9_]*)'/g,
  )) {
    const code = m[1] as string;
    if (!NODE_CODE.test(code)) uses.push({ code, where: line(m.index) });
  }
  return uses;
}

/** Blanks out the contents of string and template literals (keeps their length). */
function withoutStrings(text: string): string {
  return text.replace(/'[^'\n]*'|"[^"\n]*"|`[^`]*`/g, (m) => `${m[0]}${' '.repeat(m.length - 2)}${m[0]}`);
}

/** Every status spelled beside a code: `new TetherError('X', …, { status: N })`, `fail('X', …, N)`, `{ status: N, code: 'X' }`, `.fail(req, res, route, N, 'X', …)`. */
export function statusesIn(text: string, file: string): Array<Use & { status: number }> {
  const out: Array<Use & { status: number }> = [];
  const line = (index: number) => `${file}:${text.slice(0, index).split('\n').length}`;
  for (const m of text.matchAll(/(?<![\w])(?:new\s+TetherError|\.?fail|replyError|sendRawError)\s*\(/g)) {
    const args = argumentsAt(text, m.index + m[0].length - 1);
    const codes = [...args.matchAll(CODE_LITERAL)]
      .map((c) => c[1] as string)
      .filter((c) => !NODE_CODE.test(c));
    const statuses = [...withoutStrings(args).matchAll(/(?:status:\s*|[(,]\s*)([1-5]\d\d)\b(?!\s*\*)/g)].map(
      (x) => Number(x[1]),
    );
    if (codes.length === 1 && statuses.length === 1)
      out.push({ code: codes[0] as string, status: statuses[0] as number, where: line(m.index) });
  }
  for (const m of text.matchAll(/\bstatus:\s*(\d{3}),\s*code:\s*'([A-Z][A-Z0-9_]*)'/g))
    out.push({ code: m[2] as string, status: Number(m[1]), where: line(m.index) });
  return out;
}

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) sourceFiles(p, out);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function allUses(): Use[] {
  return sourceFiles(SRC)
    .filter((f) => !f.endsWith(join('errors', 'catalog.ts')))
    .flatMap((f) => codesIn(readFileSync(f, 'utf8'), relative(SRC, f)));
}

/** docs/errors.md's generated table. */
function renderTable(): string {
  const rows = Object.entries(CATALOG)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(
      ([code, e]: [string, CatalogEntry]) =>
        `| \`${code}\` | ${e.status}${e.alsoStatus ? ` (also ${e.alsoStatus.join(', ')})` : ''} | ${e.exit} | ${e.retryable ? 'yes' : 'no'} | ${e.area} | ${e.description.replaceAll('|', '\\|')} |`,
    );
  return ['| Code | HTTP | Exit | Retry helps | Area | Meaning |', '|---|---|---|---|---|---|', ...rows].join(
    '\n',
  );
}
const BEGIN = '<!-- BEGIN GENERATED: src/errors/catalog.ts (UPDATE_ERRORS_DOC=1 to rewrite) -->';
const END = '<!-- END GENERATED -->';

describe('error catalog', () => {
  test('every code used in src/ is in the catalog', () => {
    const unknown = allUses().filter((u) => !isErrorCode(u.code));
    assert.deepEqual(
      unknown.map((u) => `${u.code} at ${u.where}`),
      [],
      'codes missing from src/errors/catalog.ts',
    );
  });

  test('every catalog entry is used somewhere in src/', () => {
    const used = new Set(allUses().map((u) => u.code));
    const unused = Object.keys(CATALOG).filter((c) => !used.has(c));
    assert.deepEqual(unused, [], 'catalog entries nothing throws or sends: remove them');
  });

  test("a status spelled beside a code is the catalog's (or its listed second status)", () => {
    const files = sourceFiles(SRC).filter((f) => !f.endsWith(join('errors', 'catalog.ts')));
    const found = files.flatMap((f) => statusesIn(readFileSync(f, 'utf8'), relative(SRC, f)));
    assert.ok(found.length > 50, `only ${found.length} status/code pairs found: the scan is broken`);
    const wrong = found.filter((u) => {
      const entry: CatalogEntry | undefined = isErrorCode(u.code) ? CATALOG[u.code] : undefined;
      return entry !== undefined && entry.status !== u.status && !entry.alsoStatus?.includes(u.status);
    });
    assert.deepEqual(
      wrong.map((u) => `${u.code} ${u.status} at ${u.where}`),
      [],
      'statuses that differ from the catalog: fix the site or list the status in alsoStatus',
    );
    assert.deepEqual(
      statusesIn("throw new TetherError('TENANT_NOT_FOUND', `x`, { status: 409 });", 'z.ts').map(
        (u) => u.status,
      ),
      [409],
    );
  });

  test('the scan finds a code that is not in the catalog, in every code position', () => {
    // source text for the scanner ("#{" stands for a template placeholder)
    const bad = [
      "throw new TetherError('NO_SUCH_CODE', 'x', { status: 400 });",
      "throw new TetherError(\n  'NO_SUCH_CODE_2',\n  `multi #{line('x')}`,\n);",
      "sendControl({ type: 'error', code: 'NO_SUCH_CONTROL', message: why });",
      "return { ok: false, code: 'NO_SUCH_DECISION', reason: 'r' };",
      "this.fail(req, res, route, 502, 'NO_SUCH_ANSWER', `the #{x} failed`);",
      "replyError(res, 400, `malformed request: #{framing}`, 'NO_SUCH_REPLY');",
      "return refuse('NO_SUCH_REFUSAL', `wrong password for #{name}`, { final: false });",
      "refuse(label, 'NO_SUCH_FORWARD_REFUSAL', (e as Error).message, reject);",
      "if (isTetherError(err, 'NO_SUCH_CHECK')) return;",
      "throw keyError('NO_SUCH_KEY_ERROR', `ssh_key #{path}: not a file`);",
      "const code = isTetherError(err) ? err.code : 'NO_SUCH_FALLBACK';",
    ]
      .join('\n')
      .replaceAll('#{', '$' + '{');
    const found = codesIn(bad, 'x.ts').map((u) => u.code);
    assert.deepEqual(found.sort(), [
      'NO_SUCH_ANSWER',
      'NO_SUCH_CHECK',
      'NO_SUCH_CODE',
      'NO_SUCH_CODE_2',
      'NO_SUCH_CONTROL',
      'NO_SUCH_DECISION',
      'NO_SUCH_FALLBACK',
      'NO_SUCH_FORWARD_REFUSAL',
      'NO_SUCH_KEY_ERROR',
      'NO_SUCH_REFUSAL',
      'NO_SUCH_REPLY',
    ]);
    assert.ok(found.every((c) => !isErrorCode(c)));
    // Node's own codes and HTTP methods in code-taking calls are not taken for ours.
    assert.deepEqual(
      codesIn(
        "Object.assign(new Error('t'), { code: 'ETIMEDOUT' }); http.request({ method: 'GET' });",
        'y.ts',
      ),
      [],
    );
  });

  test('each entry: a 4xx/5xx status, the exit code its status gives, a description', () => {
    for (const [code, e] of Object.entries(CATALOG)) {
      assert.equal(e.exit, exitForStatus(e.status), code);
      assert.ok(e.status >= 400 && e.status <= 599, code);
      assert.ok(e.description.length > 0, code);
    }
  });

  test('TetherError takes status, exit and retryable from the catalog; an explicit status keeps its exit rule', () => {
    const a = new TetherError('TENANT_NOT_FOUND', 'tenant "x" does not exist');
    assert.deepEqual([a.status, a.exit, a.retryable], [404, 3, false]);
    const b = new TetherError('PORT_RANGE_EXHAUSTED', 'no free port');
    assert.deepEqual([b.status, b.exit, b.retryable], [503, 5, true]);
    // a status relayed from the wire or a timeout beside a refusal: exit as before (by status)
    const c = new TetherError('GATEWAY_UNREACHABLE', 'no connection in time', { status: 504 });
    assert.deepEqual([c.status, c.exit], [504, 1]);
    assert.deepEqual(a.toJSON(), {
      error: { code: 'TENANT_NOT_FOUND', message: 'tenant "x" does not exist' },
    });
  });

  test('a code from the wire is kept when known, else replaced by the fallback', () => {
    assert.equal(toErrorCode('FORWARD_OFFLINE', 'FORWARD_REFUSED'), 'FORWARD_OFFLINE');
    assert.equal(toErrorCode('HTTP_502', 'ADMIN_ERROR'), 'ADMIN_ERROR');
    assert.equal(toErrorCode(undefined, 'ADMIN_ERROR'), 'ADMIN_ERROR');
    assert.equal(toErrorCode('toString', 'ADMIN_ERROR'), 'ADMIN_ERROR');
    assert.equal(toErrorCode('__proto__', 'ADMIN_ERROR'), 'ADMIN_ERROR');
  });

  test('docs/errors.md lists every code with its status, exit code and retry', () => {
    const doc = readFileSync(DOC, 'utf8');
    const start = doc.indexOf(BEGIN);
    const end = doc.indexOf(END);
    assert.ok(start >= 0 && end > start, `docs/errors.md lacks the ${BEGIN} … ${END} markers`);
    const table = renderTable();
    const current = doc.slice(start + BEGIN.length, end).trim();
    if (current !== table && process.env.UPDATE_ERRORS_DOC === '1') {
      writeFileSync(DOC, `${doc.slice(0, start + BEGIN.length)}\n${table}\n${doc.slice(end)}`);
      return;
    }
    assert.equal(current, table, 'docs/errors.md is out of date: run the test with UPDATE_ERRORS_DOC=1');
  });
});

/** Type-level: an unknown code does not compile (kept as a compile-time check, never run). */
export function _typeCheck(): void {
  // @ts-expect-error NOT_A_CODE is not in the catalog
  new TetherError('NOT_A_CODE', 'x');
  const ok: ErrorCode = 'INTERNAL';
  void ok;
}
