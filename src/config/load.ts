import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { errors, type FieldProblem, TetherError } from '../errors/index.js';

/** Reads a YAML file; syntax errors name line and column. A missing file is a clear error. */
export function readYamlFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : String(e);
    throw new TetherError('CONFIG_UNREADABLE', `${file}: cannot read config: ${why}`, { status: 400 });
  }
  return parseYamlText(text, file);
}

export function parseYamlText(text: string, file: string): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    const details = doc.errors.map((err) => {
      const pos = err.linePos?.[0] ?? lineCounter.linePos(Math.min(err.pos[0], text.length));
      const where = pos ? `line ${pos.line}, column ${pos.col}` : 'unknown position';
      const msg = err.message.split('\n')[0] ?? err.message;
      return { path: '', message: `YAML syntax error at ${where}: ${msg}` };
    });
    throw errors.config(file, details);
  }
  return yamlToJS(doc, file);
}

/**
 * The document's value. Unresolved aliases and alias expansion past yaml's limit (a "billion
 * laughs" file) throw from here, so they become config errors like any other.
 */
export function yamlToJS(doc: { toJS(): unknown }, file: string): unknown {
  try {
    return doc.toJS() ?? {};
  } catch (e) {
    throw errors.config(file, [{ path: '', message: `YAML error: ${(e as Error).message}` }]);
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
