import assert from 'node:assert/strict';

/** One scrape: `key(name, labels)` → value. */
export type Samples = Map<string, number>;

/** `name{a="1",b="2"}` with labels sorted, so lookups do not depend on print order. */
export function key(name: string, labels: Record<string, string> = {}): string {
  const l = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  return l ? `${name}{${l}}` : name;
}

/** Parses Prometheus text exposition (the subset prom-client prints). */
export function parse(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.set(key(m[1]!, labels), Number(m[3]));
  }
  return out;
}

/** GETs a metrics endpoint, checks it answers 200 in the text format, and parses it. */
export async function scrape(url: string, headers: Record<string, string> = {}): Promise<Samples> {
  const r = await fetch(url, { headers });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parse(await r.text());
}

/** How far a sample moved between two scrapes (absent = 0). */
export const delta = (a: Samples, b: Samples, name: string, labels?: Record<string, string>) =>
  (b.get(key(name, labels)) ?? 0) - (a.get(key(name, labels)) ?? 0);
