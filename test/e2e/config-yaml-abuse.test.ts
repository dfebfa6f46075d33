import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { BIN, run, tempDir } from '../helpers/util.js';

/** Hostile YAML: every reader of a config file exits 2 naming the file and the problem. */

const RECURSIVE = 'a: &a [*a]\n';
const RECURSIVE_MAP = 'gateway: "gw.example.com:2222"\nrepositories: &r { g: *r }\n';
/** "billion laughs": 9^6 strings from 54 aliases. */
const BOMB = [
  'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
  'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
  'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
  'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
  'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
  'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
  '',
].join('\n');
/** Just over 1 MiB of comment lines: valid YAML, refused for its size. */
const HUGE = `${'# padding padding padding padding padding padding padding padding\n'.repeat(16_500)}a: 1\n`;

const cases: Array<{ name: string; text: string; problem: RegExp }> = [
  {
    name: 'recursive alias in a sequence',
    text: RECURSIVE,
    problem: /line 1, column 8: the alias \*a refers to the anchor &a that contains it/,
  },
  {
    name: 'recursive alias in a mapping',
    text: RECURSIVE_MAP,
    problem: /line 2, column 23: the alias \*r refers to the anchor &r that contains it/,
  },
  {
    name: 'alias bomb',
    text: BOMB,
    problem: /aliases expand to too much data \(more than 100 alias expansions/,
  },
  { name: 'file over 1 MiB', text: HUGE, problem: /cannot read config: larger than 1048576 bytes \(1 MiB\)/ },
];

const commands: Array<{ name: string; args: (file: string) => string[] }> = [
  { name: 'tether gateway -c', args: (f) => ['gateway', '-c', f] },
  { name: 'tether connector run -c', args: (f) => ['connector', 'run', '-c', f] },
  { name: 'tether connector config -c', args: (f) => ['connector', 'config', '-c', f] },
];

describe('hostile YAML in config files', () => {
  const dir = tempDir('tether-yaml-');
  for (const c of cases) {
    for (const cmd of commands) {
      test(`${cmd.name} with a ${c.name}: exit 2, the file and the problem named`, async () => {
        const file = join(dir, `${c.name.replace(/\W+/g, '-')}.yaml`);
        writeFileSync(file, c.text);
        const env = { ...process.env, TETHER_DATA_DIR: join(dir, 'data') };
        const r = await run(process.execPath, [BIN, ...cmd.args(file)], { env, timeout: 30_000 });
        assert.equal(r.code, 2, `exit code; stderr: ${r.stderr}`);
        assert.ok(r.stderr.includes(file), `stderr names the file: ${r.stderr}`);
        assert.match(r.stderr, c.problem);
        assert.doesNotMatch(r.stderr, /call stack|RangeError| {4}at /);
      });
    }
  }

  test('a device that never ends (/dev/zero) is refused by its size, not read forever', async () => {
    const r = await run(process.execPath, [BIN, 'gateway', '-c', '/dev/zero'], { timeout: 30_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^tether: \/dev\/zero: cannot read config: larger than 1048576 bytes/);
  });

  test('aliases a real config uses (a shared value) still load', async () => {
    const file = join(dir, 'aliases-ok.yaml');
    writeFileSync(
      file,
      [
        'gateway: "gw.example.com:2222"',
        'ssh_key: ./key',
        'tenant: acme',
        'repositories:',
        '  g:',
        '    a: &web "http://intranet.example.com:80/"',
        '    b: *web',
        '',
      ].join('\n'),
    );
    const r = await run(process.execPath, [BIN, 'connector', 'config', '-c', file], { timeout: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((r.stdout.match(/intranet\.example\.com/g) ?? []).length, 2, r.stdout);
  });
});
