import { closeSync, openSync, readSync } from 'node:fs';
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument, visit } from 'yaml';
import type { z } from 'zod';
import { errors, type FieldProblem, TetherError } from '../errors/index.js';

/** A config file larger than this is refused before it is parsed (no config comes close). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Alias expansions a config file may make (yaml's "billion laughs" guard). */
export const MAX_YAML_ALIASES = 100;

/**
 * Reads a config file as text, at most MAX_CONFIG_BYTES (read with a cap, so a FIFO or a
 * device such as /dev/zero is refused too). A missing or unreadable file is a clear error;
 * `notFound` replaces the default "file not found" text.
 */
export function readConfigText(file: string, shownAs = file, notFound = 'file not found'): string {
  const fail = (why: string): never => {
    throw new TetherError('CONFIG_UNREADABLE', `${shownAs}: cannot read config: ${why}`, { status: 400 });
  };
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    return fail(whyUnreadable(e, notFound));
  }
  try {
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let total = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, total, buf.length - total, null);
      } catch (e) {
        return fail(whyUnreadable(e, notFound));
      }
      if (n === 0) break;
      total += n;
      if (total > MAX_CONFIG_BYTES) {
        return fail(`larger than ${MAX_CONFIG_BYTES} bytes (1 MiB), the most a config file may be`);
      }
    }
    return buf.subarray(0, total).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function whyUnreadable(e: unknown, notFound: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return notFound;
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return String(e);
}

/** Reads a YAML file; syntax errors name line and column. A missing file is a clear error. */
export function readYamlFile(file: string): unknown {
  return parseYamlText(readConfigText(file), file);
}

export function parseYamlText(text: string, file: string): unknown {
  return parseYamlStrict(text, file);
}

/** How a duplicate key is named: `path` leads to the mapping, `line`/`first` are its two lines. */
export type DuplicateMessage = (path: readonly string[], key: string, line: number, first: number) => string;

const duplicateKey: DuplicateMessage = (_path, key, line, first) =>
  `duplicate key "${key}" (line ${line}; first defined on line ${first})`;

/**
 * The reader of every config file (gateway.yaml, connect.yaml): YAML syntax errors name line
 * and column, every duplicate key is named with both of its lines (all of them in one error),
 * aliases are bounded. Returns the document's value.
 */
export function parseYamlStrict(text: string, file: string, duplicate = duplicateKey): unknown {
  const parsed = parseYamlDocument(text, file, { uniqueKeys: false });
  const problems: FieldProblem[] = [];
  findDuplicateKeys(parsed.doc.contents, [], problems, parsed.lineCounter, duplicate);
  if (problems.length > 0) throw errors.config(file, problems);
  return yamlToJS(parsed, file);
}

function findDuplicateKeys(
  node: unknown,
  path: string[],
  out: FieldProblem[],
  lc: LineCounter,
  duplicate: DuplicateMessage,
): void {
  if (isMap(node)) {
    const seen = new Map<string, number>();
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const line = isScalar(pair.key) && pair.key.range ? lc.linePos(pair.key.range[0]).line : 0;
      const first = seen.get(key);
      if (first !== undefined) {
        out.push({ path: [...path, key].join('.'), message: duplicate(path, key, line, first) });
      } else seen.set(key, line);
      findDuplicateKeys(pair.value, [...path, key], out, lc, duplicate);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      findDuplicateKeys(item, [...path, `[${i}]`], out, lc, duplicate);
    });
  }
}

/**
 * Parses YAML into a document: syntax errors name line and column, and an alias inside the
 * node it refers to (`a: &a [*a]`, which has no finite value) is refused naming its line.
 */
export function parseYamlDocument(
  text: string,
  file: string,
  opts: { uniqueKeys: boolean },
): { doc: Document; lineCounter: LineCounter } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: opts.uniqueKeys, lineCounter });
  const where = (offset: number): string => {
    const pos = lineCounter.linePos(Math.min(offset, text.length));
    return pos ? `line ${pos.line}, column ${pos.col}` : 'unknown position';
  };
  if (doc.errors.length > 0) {
    const details = doc.errors.map((err) => {
      const pos = err.linePos?.[0];
      const at = pos ? `line ${pos.line}, column ${pos.col}` : where(err.pos[0]);
      const msg = err.message.split('\n')[0] ?? err.message;
      return { path: '', message: `YAML syntax error at ${at}: ${msg}` };
    });
    throw errors.config(file, details);
  }
  const problems: FieldProblem[] = [];
  visit(doc, {
    Alias(_key, node, path) {
      const source = node.resolve(doc);
      if (source && (path as readonly unknown[]).includes(source)) {
        problems.push({
          path: '',
          message: `YAML error at ${where(node.range?.[0] ?? 0)}: the alias *${node.source} refers to the anchor &${node.source} that contains it (a recursive alias has no value)`,
        });
      }
    },
  });
  if (problems.length > 0) throw errors.config(file, problems);
  return { doc, lineCounter };
}

/**
 * The document's value. Alias expansion past MAX_YAML_ALIASES (a "billion laughs" file) and
 * unresolved aliases throw from here, so they become config errors like any other.
 */
export function yamlToJS(
  parsed: { doc: { toJS(opts?: { maxAliasCount?: number }): unknown } },
  file: string,
): unknown {
  try {
    return parsed.doc.toJS({ maxAliasCount: MAX_YAML_ALIASES }) ?? {};
  } catch (e) {
    const msg = (e as Error).message;
    const why = /alias count/i.test(msg)
      ? `aliases expand to too much data (more than ${MAX_YAML_ALIASES} alias expansions; a "billion laughs" file?)`
      : msg;
    throw errors.config(file, [{ path: '', message: `YAML error: ${why}` }]);
  }
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Expands ${VAR} in every string value (never in keys). Unset variables are errors. */
export function expandEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path = '',
  problems: FieldProblem[] = [],
): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) {
        problems.push({ path, message: `environment variable ${name} is not set` });
        return '';
      }
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, `${path}[${i}]`, problems));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value))
      out[k] = expandEnv(v, env, path ? `${path}.${k}` : k, problems);
    return out;
  }
  return value;
}

/**
 * The step after reading: the top level must be a mapping (`topLevel` says of what), and
 * ${VAR}s are expanded in every string value; every unset variable is named in one error.
 */
export function expandTopLevel(
  raw: unknown,
  source: string,
  env: NodeJS.ProcessEnv,
  topLevel = 'the top level must be a mapping of keys',
): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw errors.config(source, [{ path: '', message: topLevel }]);
  }
  const problems: FieldProblem[] = [];
  const expanded = expandEnv(raw, env, '', problems) as Record<string, unknown>;
  if (problems.length > 0) throw errors.config(source, problems);
  return expanded;
}

export function zodProblems(err: z.ZodError): FieldProblem[] {
  return err.issues.map((issue) => {
    const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('.');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const keys = (issue as { keys: string[] }).keys;
      return {
        path: [path, keys[0]].filter(Boolean).join('.').replace(/\.\[/g, '['),
        message: `unknown key${keys.length > 1 ? `s ${keys.join(', ')}` : ''}`,
      };
    }
    if (message.startsWith('Invalid input: expected') && message.includes('received undefined')) {
      message = 'is required';
    }
    return { path: path.replace(/\.\[/g, '['), message };
  });
}

/** Validates against a schema and deep-freezes the result. */
export function validate<S extends z.ZodType>(schema: S, raw: unknown, file: string): Readonly<z.output<S>> {
  const r = schema.safeParse(raw);
  if (!r.success) throw errors.config(file, zodProblems(r.error));
  return deepFreeze(r.data);
}

export function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}

/** "host:port", "[::1]:port", ":port" → { host, port }. */
export function parseHostPort(s: string, defaultHost = '0.0.0.0'): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s.trim());
  if (!m) return null;
  const port = Number(m[3]);
  if (port > 65535) return null;
  const host = m[1] ?? m[2] ?? '';
  return { host: host === '' ? defaultHost : host, port };
}
