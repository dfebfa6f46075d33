/**
 * `npm run demo`: a gateway in a temp dir, a tenant, a forward to a tiny local HTTP server,
 * a page fetched through the lease port; every step printed; everything cleaned up.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const BIN = resolve(import.meta.dirname, '../dist/bin/tether.js');
const dir = mkdtempSync(join(tmpdir(), 'tether-demo-'));
const children: ChildProcess[] = [];
let step = 0;
const say = (s: string) => console.log(`\n[${++step}] ${s}`);

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function waitLine(
  p: ChildProcess,
  stream: 'stdout' | 'stderr',
  re: RegExp,
  ms = 20_000,
): Promise<RegExpExecArray> {
  return new Promise((resolveLine, reject) => {
    let buf = '';
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${re}:\n${buf}`)), ms);
    p[stream]!.on('data', (c: Buffer) => {
      buf += c.toString();
      const m = re.exec(buf);
      if (m) {
        clearTimeout(t);
        resolveLine(m);
      }
    });
  });
}

async function main(): Promise<void> {
  say(`Starting a gateway with its data in ${dir}`);
  const cfg = join(dir, 'gateway.yaml');
  writeFileSync(
    cfg,
    `data_dir: ${join(dir, 'data')}\ntunnel: { listen: "127.0.0.1:0" }\nadmin: { listen: "127.0.0.1:0" }\nforwards: { ports: "20200-20299" }\n`,
  );
  const gw = spawn(process.execPath, [BIN, 'gateway', '-c', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TETHER_LOG_LEVEL: 'info' },
  });
  children.push(gw);
  const started = JSON.parse((await waitLine(gw, 'stdout', /\{[^\n]*"gateway.started"[^\n]*\}/))[0]) as {
    tunnel: string;
    admin: string;
    msg: string;
  };
  console.log(`    ${started.msg}`);
  const env = { ...process.env, TETHER_DATA_DIR: join(dir, 'data') };

  say('Adding tenant "acme" (tether tenants add acme): its private key is printed once');
  const add = spawnSync(process.execPath, [BIN, 'tenants', 'add', 'acme'], { env, encoding: 'utf8' });
  if (add.status !== 0) throw new Error(add.stderr);
  const keyFile = join(dir, 'acme.key');
  writeFileSync(keyFile, add.stdout, { mode: 0o600 });
  console.log(`    ${add.stderr.split('\n')[0]}\n    saved to ${keyFile}`);

  say('Starting a tiny HTTP server inside the "private network" (127.0.0.1, OS-chosen port)');
  const web = http.createServer((req, res) =>
    res.end(`Hello from inside the private network! You asked for ${req.url}\n`),
  );
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', () => r()));
  const webPort = (web.address() as AddressInfo).port;
  console.log(`    http://127.0.0.1:${webPort}/`);

  say('Connecting with plain OpenSSH as the connector: ssh -N -R demo/web:0:127.0.0.1:<port> acme@gateway');
  const sshPort = started.tunnel.split(':').pop()!;
  const ssh = spawn(
    'ssh',
    [
      '-N',
      '-v',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'ExitOnForwardFailure=yes',
      '-i',
      keyFile,
      '-p',
      sshPort,
      '-R',
      `demo/web:0:127.0.0.1:${webPort}`,
      'acme@127.0.0.1',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(ssh);
  const lease = Number((await waitLine(ssh, 'stderr', /Allocated port (\d+)/))[1]);
  console.log(`    the gateway leased port ${lease} to acme's demo/web`);

  say("The operator's view (tether tenants list)");
  const list = spawnSync(process.execPath, [BIN, 'tenants', 'list'], { env, encoding: 'utf8' });
  console.log(list.stdout.replace(/^/gm, '    '));

  say(`A cloud application fetches http://127.0.0.1:${lease}/hello through the gateway`);
  const res = await fetch(`http://127.0.0.1:${lease}/hello`);
  console.log(`    HTTP ${res.status}: ${(await res.text()).trim()}`);

  say('Cleaning up: connector, gateway, web server, temp dir');
  web.close();
  cleanup();
  console.log('    done.');
  process.exit(res.status === 200 ? 0 : 1);
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${(e as Error).message}`);
  process.exit(1);
});
