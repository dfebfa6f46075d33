// The import layers of DESIGN.md (Layout): imports only go down.
//
//   bin → cli → roles (gateway, connector, peer) → frontdoor, admin, cluster → tunnel → config
//       → core → store, log → errors
//
// (DESIGN.md puts store, log and errors side by side; errors sits one below, as the log's audit
// sink throws coded errors and the catalog itself imports nothing of ours.)
//
// Every import of every src/**/*.ts and src/**/*.js file (static, type-only, re-exports and
// dynamic `import()`) is read with the TypeScript compiler's own pre-parser, resolved to the
// file it names, and checked: an import into a higher layer fails, and so does one into another
// folder of the same layer (frontdoor vs admin vs cluster, gateway vs connector vs peer) unless
// SAME_LAYER_ALLOWED below names it with its reason. Contracts a lower part needs (Component,
// LeaseBinder, each part's deps) live below their users, so the rule has no exceptions upward.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { describe, test } from 'node:test';
import ts from 'typescript';
import { ROOT } from './helpers/util.js';

/** Top-level folders of src/ by layer, highest first. A new folder must be placed here. */
export const LAYERS: readonly (readonly string[])[] = [
  ['bin'],
  ['cli'],
  ['gateway', 'connector', 'peer'],
  ['frontdoor', 'admin', 'cluster'],
  ['tunnel'],
  ['config'],
  ['core'],
  ['store', 'log'],
  ['errors'],
];

/** Folders whose sub-folders are peers too: one front door does not import another. */
const PEER_SUBFOLDERS = new Set(['frontdoor']);

/**
 * Imports between different folders of one layer that are allowed, "from → to" with the reason.
 * The roles do not use each other and neither do frontdoor, admin and cluster.
 */
export const SAME_LAYER_ALLOWED: ReadonlyMap<string, string> = new Map<string, string>([
  [
    'frontdoor/access-proxy → frontdoor/http-proxy',
    "the access proxy's absolute-form requests reuse the HTTP front door's framing rules and " +
      'header-safety checks (one implementation of request smuggling defences)',
  ],
]);

const SRC = join(ROOT, 'src');
const STATIC_ASSETS = join(SRC, 'admin', 'dashboard', 'static');

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sourceFiles(p, out);
    else if (/\.(ts|js)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

export interface ImportEdge {
  /** The importing file, relative to the repository (e.g. "src/tunnel/server.ts"). */
  file: string;
  /** The specifier as written. */
  specifier: string;
  /** The imported file's folder under src/ ("tunnel", or "frontdoor/raw-port" for front doors). */
  target: string;
}

/** The unit of a path relative to src/: its top folder, or top/sub for PEER_SUBFOLDERS. */
function unitOf(relToSrc: string): string {
  const parts = relToSrc.split(sep);
  return PEER_SUBFOLDERS.has(parts[0]!) && parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

/** Every relative import of `text` (a file at `path`) that lands in src/, with its folder. */
export function importsOf(path: string, text: string): ImportEdge[] {
  const info = ts.preProcessFile(text, true, true);
  const edges: ImportEdge[] = [];
  for (const ref of info.importedFiles) {
    const specifier = ref.fileName;
    if (!specifier.startsWith('.')) continue; // packages and node: builtins
    const resolved = join(dirname(path), specifier);
    const rel = relative(SRC, resolved);
    if (rel.startsWith('..')) continue; // outside src/ (none today)
    edges.push({ file: relative(ROOT, path), specifier, target: unitOf(rel) });
  }
  return edges;
}

function folderOf(file: string): string {
  return unitOf(relative(SRC, join(ROOT, file)));
}

function layerOf(folder: string): number {
  const top = folder.split('/')[0]!;
  return LAYERS.findIndex((l) => l.includes(top));
}

/** What is wrong with one import, or undefined when it goes down (or stays in its folder). */
export function violation(e: ImportEdge): string | undefined {
  const from = folderOf(e.file);
  const to = e.target;
  if (from === to) return undefined;
  const a = layerOf(from);
  const b = layerOf(to);
  if (a < 0) return `${e.file}: folder src/${from} has no layer (add it to LAYERS in test/layers.test.ts)`;
  if (b < 0) return `${e.file} imports '${e.specifier}': folder src/${to} has no layer`;
  const name = (i: number) => LAYERS[i]!.join('/');
  if (b < a)
    return `${e.file} imports '${e.specifier}' upward: ${from} (layer ${name(a)}) → ${to} (layer ${name(b)})`;
  if (a === b && !SAME_LAYER_ALLOWED.has(`${from} → ${to}`))
    return `${e.file} imports '${e.specifier}' sideways: ${from} → ${to} (same layer ${name(a)})`;
  return undefined;
}

/** Node builtins that do I/O, which core/ never imports (node:crypto, events, stream are fine). */
const IO_BUILTINS =
  /^(node:)?(net|tls|dgram|dns|http|https|http2|fs|child_process|cluster|worker_threads)(\/.*)?$/;

/** The I/O builtins `text` (the file `file`, relative to the repository) imports, as messages. */
export function ioImportsOf(file: string, text: string): string[] {
  return ts
    .preProcessFile(text, true, true)
    .importedFiles.map((r) => r.fileName)
    .filter((s) => IO_BUILTINS.test(s))
    .map((s) => `${file} imports '${s}' (I/O)`);
}

function allEdges(): ImportEdge[] {
  return sourceFiles(SRC)
    .filter((f) => !f.startsWith(STATIC_ASSETS + sep))
    .flatMap((f) => importsOf(f, readFileSync(f, 'utf8')));
}

describe('import layers', () => {
  test('no import in src/ runs upward or sideways across the layers', () => {
    const edges = allEdges();
    assert.ok(edges.length > 300, `found only ${edges.length} imports: is the parser reading src/?`);
    const wrong = edges.map(violation).filter((v): v is string => v !== undefined);
    assert.deepEqual(wrong, [], `imports against the layers (DESIGN.md, Layout):\n${wrong.join('\n')}`);
  });

  test('every allowed same-layer import is still in use (the list does not go stale)', () => {
    const used = new Set(allEdges().map((e) => `${folderOf(e.file)} → ${e.target}`));
    const stale = [...SAME_LAYER_ALLOWED.keys()].filter((k) => !used.has(k));
    assert.deepEqual(stale, [], 'remove these from SAME_LAYER_ALLOWED in test/layers.test.ts');
  });

  test('every folder of src/ has a layer', () => {
    const folders = readdirSync(SRC).filter((n) => statSync(join(SRC, n)).isDirectory());
    const missing = folders.filter((f) => layerOf(f) < 0);
    assert.deepEqual(
      missing,
      [],
      `add these folders to LAYERS in test/layers.test.ts: ${missing.join(', ')}`,
    );
  });

  test('core/ does no I/O: no sockets, HTTP, TLS, DNS, files or processes (DESIGN.md: policy, no I/O)', () => {
    const core = join(SRC, 'core');
    const wrong = sourceFiles(core)
      .filter((f) => !f.endsWith('.test.ts'))
      .flatMap((f) => ioImportsOf(relative(ROOT, f), readFileSync(f, 'utf8')));
    assert.deepEqual(
      wrong,
      [],
      'core/ takes Store, Clock and Logger; I/O belongs to tunnel/, frontdoor/ or the roles',
    );
  });

  test('the core I/O check catches each form of a builtin import', () => {
    const text = [
      "import net from 'node:net';",
      "import { connect } from 'tls';",
      "import type { Server } from 'node:http';",
      "const fs = await import('node:fs/promises');",
      "import { createHash } from 'node:crypto';",
      "import { Readable } from 'node:stream';",
    ].join('\n');
    assert.deepEqual(ioImportsOf('src/core/example.ts', text), [
      "src/core/example.ts imports 'node:net' (I/O)",
      "src/core/example.ts imports 'tls' (I/O)",
      "src/core/example.ts imports 'node:http' (I/O)",
      "src/core/example.ts imports 'node:fs/promises' (I/O)",
    ]);
  });

  test('the browser dashboard stays inside its own folder', () => {
    // Static files are served as they are: an import out of the folder would 404 in the browser.
    const out = sourceFiles(STATIC_ASSETS).flatMap((f) =>
      ts
        .preProcessFile(readFileSync(f, 'utf8'), true, true)
        .importedFiles.map((r) => r.fileName)
        .filter((s) => !s.startsWith('./'))
        .map((s) => `${relative(ROOT, f)} imports '${s}'`),
    );
    assert.deepEqual(out, []);
  });

  test('the check itself catches each kind of import', () => {
    const at = join(SRC, 'tunnel', 'example.ts');
    const text = [
      "import type { Component } from '../gateway/index.js';",
      "import { x } from '../frontdoor/raw-port/index.js';",
      "export { y } from '../admin/metrics.js';",
      "const lazy = await import('../cli/program.js');",
      "import { z } from '../core/clock.js';",
      "import { w } from './pipe.js';",
      "import net from 'node:net';",
    ].join('\n');
    const wrong = importsOf(at, text).map(violation);
    assert.deepEqual(wrong, [
      "src/tunnel/example.ts imports '../gateway/index.js' upward: tunnel (layer tunnel) → gateway (layer gateway/connector/peer)",
      "src/tunnel/example.ts imports '../frontdoor/raw-port/index.js' upward: tunnel (layer tunnel) → frontdoor/raw-port (layer frontdoor/admin/cluster)",
      "src/tunnel/example.ts imports '../admin/metrics.js' upward: tunnel (layer tunnel) → admin (layer frontdoor/admin/cluster)",
      "src/tunnel/example.ts imports '../cli/program.js' upward: tunnel (layer tunnel) → cli (layer cli)",
      undefined,
      undefined,
    ]);
    const sideways = importsOf(join(SRC, 'cluster', 'index.ts'), "import '../frontdoor/raw-port/index.js';");
    assert.deepEqual(sideways.map(violation), [
      "src/cluster/index.ts imports '../frontdoor/raw-port/index.js' sideways: cluster → frontdoor/raw-port (same layer frontdoor/admin/cluster)",
    ]);
    const door = importsOf(
      join(SRC, 'frontdoor', 'ssh-proxy', 'index.ts'),
      "import '../raw-port/index.js';\nimport './server.js';",
    );
    assert.deepEqual(door.map(violation), [
      "src/frontdoor/ssh-proxy/index.ts imports '../raw-port/index.js' sideways: frontdoor/ssh-proxy → frontdoor/raw-port (same layer frontdoor/admin/cluster)",
      undefined,
    ]);
    // Lazy loading from the CLI goes down and is fine.
    const lazy = importsOf(join(SRC, 'cli', 'gateway.ts'), "await import('../gateway/index.js');");
    assert.deepEqual(lazy.map(violation), [undefined]);
  });
});
