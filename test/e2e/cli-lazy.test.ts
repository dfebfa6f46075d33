import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HELP_DEFAULT_SCRYPT_N } from '../../src/cli/http-proxy.js';
import { DEFAULT_SCRYPT } from '../../src/frontdoor/http-proxy/verifiers/token-hash.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { moduleLoadRecorder } from '../helpers/module-loads.js';
import { BIN, run, tempDir } from '../helpers/util.js';

/**
 * `tether` loads a command's implementation only when that command runs: help and the admin
 * CLI must not load the gateway, connector or peer roles (docs/performance.md, "CLI start").
 * A module loader hook (node --import) writes every module URL the process loads to a file.
 */

const dir = tempDir('tether-cli-lazy-');
const loads = moduleLoadRecorder();

/** Runs the real binary and returns the modules it loaded, relative to the repo ("dist/cli/…"). */
async function loadsOf(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const rec = loads.recorder();
  const r = await run(process.execPath, ['--import', loads.hook, BIN, ...args], {
    env: { ...env, ...rec.env },
  });
  return { ...r, modules: rec.modules() };
}

/**
 * What no help and no admin command may load: the roles, their layers, and their heavy packages.
 * One config module imports nothing but errors/ and is allowed: the peer's defaults (shown by
 * `peer run --help`). The CIDR parser loads only when `--allow-from`/`--tunnel-from` is given.
 */
const ROLE =
  /^dist\/(gateway|connector|peer|tunnel|frontdoor|admin|cluster|store|config\/(?!peer-defaults\.js)|log)\b/;
const HEAVY = /^node_modules\/(ssh2|pino|kysely|better-sqlite3|pg|prom-client|ws|zod|yaml|undici)\//;
const ACTIONS = /^dist\/cli\/[a-z-]+-actions\.js$/;

function offending(modules: string[], allowActions = false): string[] {
  return modules.filter((m) => ROLE.test(m) || HEAVY.test(m) || (!allowActions && ACTIONS.test(m)));
}

describe('the CLI loads only what a command needs', () => {
  for (const args of [
    ['--help'],
    ['tenants', '--help'],
    ['tenants', 'list', '--help'],
    ['connector', '--help'],
    ['gateway', '--help'],
    ['peer', 'run', '--help'],
    ['--version'],
  ]) {
    test(`tether ${args.join(' ')} loads no role module`, async () => {
      const r = await loadsOf(args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, args[0] === '--version' ? /^\d+\.\d+\.\d+/ : /Usage: tether/);
      // The hook saw the program itself: an empty list would prove nothing.
      assert.ok(r.modules.includes('dist/cli/program.js'), r.modules.join('\n'));
      assert.deepEqual(offending(r.modules), []);
    });
  }

  test('the hook does see a role being loaded (connector config loads the connector action module)', async () => {
    const r = await loadsOf(['connector', 'config', '-c', join(dir, 'missing.yaml')]);
    assert.notEqual(r.code, 0);
    assert.ok(r.modules.includes('dist/cli/connector-actions.js'), r.modules.join('\n'));
    assert.ok(r.modules.some((m) => m.startsWith('dist/config/')));
  });

  describe('against a gateway', () => {
    let gw: TestGateway;
    before(async () => {
      gw = await startGateway();
      await gw.addTenant('acme');
    });
    after(async () => {
      await gw?.stop();
    });

    test('tether tenants list loads its actions and the admin client, no role', async () => {
      const r = await loadsOf(['tenants', 'list'], gw.env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^TENANT\s+QUOTA/m);
      assert.match(r.stdout, /^acme\s+20\b/m);
      assert.ok(r.modules.includes('dist/cli/tenants-actions.js'), r.modules.join('\n'));
      assert.ok(r.modules.includes('dist/cli/admin-client.js'));
      assert.deepEqual(offending(r.modules, true), []);
    });
  });

  test("the help's scrypt cost is the verifier's default", () => {
    assert.equal(HELP_DEFAULT_SCRYPT_N, DEFAULT_SCRYPT.N);
  });
});
