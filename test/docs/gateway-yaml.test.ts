import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import type { z } from 'zod';
import { gatewayConfigFrom, gatewaySchema } from '../../src/config/gateway.js';
import { ROOT } from '../helpers/util.js';
import { fencedBlocks } from './markdown.js';

const page = (f: string) => readFileSync(join(ROOT, 'docs', f), 'utf8');

type Def = {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  shape?: Record<string, z.ZodType>;
} & Record<string, unknown>;
const defOf = (s: z.ZodType) => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Every key path gateway.yaml accepts, e.g. `tunnel.login_throttle.window`, `http_proxy.routes[].to`. */
function keyPaths(schema: z.ZodType, prefix = '', out = new Set<string>()): Set<string> {
  let s = schema;
  for (;;) {
    const d = defOf(s);
    if (['optional', 'default', 'nullable', 'prefault', 'readonly', 'catch'].includes(d.type))
      s = d.innerType!;
    else if (d.type === 'pipe') s = d.in!;
    else break;
  }
  const d = defOf(s);
  if (d.type === 'object')
    for (const [k, v] of Object.entries(d.shape!)) {
      const p = prefix ? `${prefix}.${k}` : k;
      out.add(p);
      keyPaths(v, p, out);
    }
  else if (d.type === 'array') keyPaths(d.element as z.ZodType, `${prefix}[]`, out);
  else if (d.type === 'record') keyPaths(d.valueType as z.ZodType, `${prefix}.<name>`, out);
  else if (d.type === 'union') for (const o of d.options as z.ZodType[]) keyPaths(o, prefix, out);
  return out;
}

describe('docs/gateway-yaml.md covers every gateway.yaml key', () => {
  test('every key is on the page (front-door details in their own guides)', () => {
    const ref = page('gateway-yaml.md');
    const guides: Record<string, string> = {
      http_proxy: page('http-proxy.md'),
      ssh_proxy: page('ssh-proxy.md'),
    };
    const paths = [...keyPaths(gatewaySchema)];
    assert.ok(paths.length > 50, `only ${paths.length} keys`);
    const missing: string[] = [];
    for (const p of paths) {
      if (ref.includes(`\`${p}\``) || ref.includes(`\`${p}.`)) continue;
      // http_proxy.routes[]… and ssh_proxy.realms.<name>…: the key's own name in its guide.
      const [top] = p.split('.');
      const leaf = p.split('.').at(-1)!.replace('[]', '');
      if (guides[top!] && /routes|realms/.test(p) && new RegExp(`\\b${leaf}\\b`).test(guides[top!]!))
        continue;
      missing.push(p);
    }
    assert.deepEqual(missing, [], `keys not documented: ${missing.join(', ')}`);
  });

  test('the YAML examples on the page are accepted', () => {
    const blocks = fencedBlocks('docs/gateway-yaml.md').filter((b) => b.info === 'yaml');
    assert.ok(blocks.length >= 1);
    for (const b of blocks)
      assert.doesNotThrow(() => gatewayConfigFrom(parse(b.body), `gateway-yaml.md:${b.line}`));
  });
});
