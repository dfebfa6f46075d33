/**
 * The HTTP front door in front of a real private Docker registry (Debian's docker-registry,
 * protected by its own htpasswd so the credential swap is really needed), with skopeo as the
 * client: the Kloudless setup (e-mail + API token checked by a verification URL, a
 * short-lived registry credential read from a file) as a Tether feature.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { request } from '../helpers/servers.js';
import { freePort, run, stopProcess, tempDir, waitFor } from '../helpers/util.js';

const PULLER_PASS = 'registry-pass-1';
const ALICE = 'alice@example.com';

const basic = (user: string, pass: string) => ({
  authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
});

/** The verification URL: counts calls per token; a token's JSON answer lists its repositories. */
async function startVerifier() {
  const calls = new Map<string, number>();
  const grants: Record<string, string[]> = {
    'tok-alice': ['acme/app'],
    'tok-all': ['acme/*'],
    'tok-fresh': ['acme/app'],
  };
  const server = http.createServer((req, res) => {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    calls.set(token, (calls.get(token) ?? 0) + 1);
    const answer = () => {
      const repos = grants[token];
      if (!repos)
        return res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid token"}');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ repositories: repos }));
    };
    // The fresh token answers slowly, so concurrent requests overlap the one call.
    if (token === 'tok-fresh' || token.endsWith('-slow')) setTimeout(answer, 400);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/meta/licenses`,
    calls,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A one-layer image in skopeo's dir: format, written by hand (no network). */
async function writeImage(dir: string): Promise<{ layerDigest: string; layer: Buffer }> {
  const src = join(dir, 'layer-src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'hello.txt'), 'hello from a tiny image\n');
  const tar = join(dir, 'layer.tar');
  const t = await run('tar', ['-cf', tar, '-C', src, 'hello.txt']);
  assert.equal(t.code, 0, t.stderr);
  const raw = readFileSync(tar);
  const layer = gzipSync(raw);
  const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
  const config = JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: [`sha256:${sha(raw)}`] },
  });
  const img = join(dir, 'image');
  mkdirSync(img);
  writeFileSync(join(img, sha(layer)), layer);
  writeFileSync(join(img, sha(config)), config);
  writeFileSync(
    join(img, 'manifest.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${sha(config)}`,
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          digest: `sha256:${sha(layer)}`,
          size: layer.length,
        },
      ],
    }),
  );
  writeFileSync(join(img, 'version'), 'Directory Transport Version: 1.1\n');
  return { layerDigest: sha(layer), layer };
}

describe('http-proxy: Docker registry behind the front door (docker-registry + skopeo)', () => {
  let dir: string;
  let registry: ChildProcess;
  let regPort: number;
  let verifier: Awaited<ReturnType<typeof startVerifier>>;
  let gw: TestGateway;
  let port: number;
  let credFile: string;
  let image: { layerDigest: string; layer: Buffer };
  let directDigest: string;

  before(async () => {
    const v = await run('skopeo', ['--version']);
    assert.equal(v.code, 0, `skopeo cannot run here: ${v.stderr}`);
    const r = await run('docker-registry', ['--version']);
    assert.equal(r.code, 0, `docker-registry cannot run here: ${r.stderr}`);

    dir = tempDir('tether-hp-registry-');
    regPort = await freePort();
    const htp = await run('htpasswd', ['-Bbn', 'puller', PULLER_PASS]);
    assert.equal(htp.code, 0, htp.stderr);
    writeFileSync(join(dir, 'htpasswd'), htp.stdout);
    writeFileSync(
      join(dir, 'registry.yml'),
      [
        'version: 0.1',
        'log: { level: warn }',
        `storage: { filesystem: { rootdirectory: ${join(dir, 'storage')} } }`,
        `http: { addr: "127.0.0.1:${regPort}" }`,
        `auth: { htpasswd: { realm: upstream-realm, path: ${join(dir, 'htpasswd')} } }`,
        '',
      ].join('\n'),
    );
    registry = spawn('docker-registry', ['serve', join(dir, 'registry.yml')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    registry.stderr!.resume();
    await waitFor(async () => (await request(regPort, { path: '/v2/' })).status === 401, {
      what: 'docker-registry',
      timeout: 15_000,
    });

    image = await writeImage(dir);
    for (const ref of ['acme/app:1.0', 'acme/secret:1.0']) {
      const push = await run('skopeo', [
        'copy',
        '--dest-creds',
        `puller:${PULLER_PASS}`,
        '--dest-tls-verify=false',
        `dir:${join(dir, 'image')}`,
        `docker://127.0.0.1:${regPort}/${ref}`,
      ]);
      assert.equal(push.code, 0, push.stderr);
    }
    const direct = await run('skopeo', [
      'inspect',
      '--creds',
      `puller:${PULLER_PASS}`,
      '--tls-verify=false',
      `docker://127.0.0.1:${regPort}/acme/app:1.0`,
    ]);
    assert.equal(direct.code, 0, direct.stderr);
    directDigest = (JSON.parse(direct.stdout) as { Digest: string }).Digest;

    verifier = await startVerifier();
    credFile = join(dir, 'registry-credential');
    writeFileSync(credFile, `${PULLER_PASS}\n`);
    const registryRoute = {
      to: `http://127.0.0.1:${regPort}`,
      docker_registry: true,
      upstream_auth: { type: 'basic', username: 'puller', password_file: credFile },
    };
    const remote = { type: 'remote', url: verifier.url, timeout: '2s', scope_field: 'repositories' };
    gw = await startGateway({
      config: {
        log: { level: 'debug' },
        http_proxy: {
          listen: '127.0.0.1:0',
          max_failures: 1000,
          routes: [
            // Customers: read-only, e-mail + API token checked by the verification URL.
            {
              name: 'registry',
              ...registryRoute,
              read_only: true,
              auth: { type: 'basic-token', verify: remote, failure_ttl: '30s' },
            },
            // The same registry for publishing, on another host name.
            {
              name: 'publish',
              host: 'localhost',
              ...registryRoute,
              auth: { type: 'basic-token', verify: remote },
            },
            // Verifiers that are down or too slow.
            {
              name: 'verifier-down',
              host: 'down.test',
              ...registryRoute,
              auth: {
                type: 'basic-token',
                verify: { type: 'remote', url: `http://127.0.0.1:${await freePort()}/x`, timeout: '1s' },
              },
            },
            {
              name: 'verifier-slow',
              host: 'slow.test',
              ...registryRoute,
              auth: { type: 'basic-token', verify: { type: 'remote', url: verifier.url, timeout: '150ms' } },
            },
          ],
        },
      },
    });
    port = Number((await gw.output.wait(/"http_proxy":"127\.0\.0\.1:(\d+)"/))[1]);
  });

  after(async () => {
    await gw?.stop();
    if (registry) await stopProcess(registry);
    await verifier?.close();
  });

  test('GET /v2/ without credentials: 401 with the Basic challenge, the API version and UNAUTHORIZED', async () => {
    const r = await request(port, { path: '/v2/' });
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Basic realm="Docker Registry"');
    assert.equal(r.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.deepEqual(JSON.parse(r.body), {
      errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }],
    });
  });

  test('skopeo inspect with --creds <email>:<token> through the front door', async () => {
    const r = await run('skopeo', [
      'inspect',
      '--creds',
      `${ALICE}:tok-alice`,
      '--tls-verify=false',
      `docker://127.0.0.1:${port}/acme/app:1.0`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { Digest: string; Layers: string[] };
    assert.equal(info.Digest, directDigest);
    assert.deepEqual(info.Layers, [`sha256:${image.layerDigest}`]);
  });

  test('skopeo copy pulls the image through the front door', async () => {
    const out = join(dir, 'pulled');
    const r = await run('skopeo', [
      'copy',
      '--src-creds',
      `${ALICE}:tok-alice`,
      '--src-tls-verify=false',
      `docker://127.0.0.1:${port}/acme/app:1.0`,
      `dir:${out}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readFileSync(join(out, image.layerDigest)), image.layer);
  });

  test('a wrong token: skopeo is refused, the API answers 401 UNAUTHORIZED with the challenge', async () => {
    const r = await run('skopeo', [
      'inspect',
      '--creds',
      `${ALICE}:tok-wrong`,
      '--tls-verify=false',
      `docker://127.0.0.1:${port}/acme/app:1.0`,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unauthorized|authentication required/i);
    const a = await request(port, { path: '/v2/acme/app/manifests/1.0', headers: basic(ALICE, 'tok-wrong') });
    assert.equal(a.status, 401);
    assert.equal(a.headers['www-authenticate'], 'Basic realm="Docker Registry"');
    assert.equal((JSON.parse(a.body) as { errors: Array<{ code: string }> }).errors[0]!.code, 'UNAUTHORIZED');
  });

  test('a token without the scope: 403 DENIED for that repository, the allowed one still works', async () => {
    const r = await run('skopeo', [
      'inspect',
      '--creds',
      `${ALICE}:tok-alice`,
      '--tls-verify=false',
      `docker://127.0.0.1:${port}/acme/secret:1.0`,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied/i);
    const a = await request(port, {
      path: '/v2/acme/secret/manifests/1.0',
      headers: basic(ALICE, 'tok-alice'),
    });
    assert.equal(a.status, 403);
    assert.equal(a.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.deepEqual(JSON.parse(a.body), {
      errors: [{ code: 'DENIED', message: 'access to repository acme/secret is denied', detail: null }],
    });
    const wide = await request(port, {
      path: '/v2/acme/secret/manifests/1.0',
      headers: { ...basic(ALICE, 'tok-all'), accept: 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(wide.status, 200);
  });

  test('a write on the read-only route: 405 UNSUPPORTED; skopeo cannot push', async () => {
    const a = await request(port, {
      method: 'POST',
      path: '/v2/acme/app/blobs/uploads/',
      headers: basic(ALICE, 'tok-all'),
    });
    assert.equal(a.status, 405);
    assert.equal(a.headers.allow, 'GET, HEAD');
    assert.equal((JSON.parse(a.body) as { errors: Array<{ code: string }> }).errors[0]!.code, 'UNSUPPORTED');
    const r = await run('skopeo', [
      'copy',
      '--dest-creds',
      `${ALICE}:tok-all`,
      '--dest-tls-verify=false',
      `dir:${join(dir, 'image')}`,
      `docker://127.0.0.1:${port}/acme/app:2.0`,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /405|unsupported|not supported/i);
  });

  test('the read-write route takes a push (upload URLs point back at the front door)', async () => {
    const r = await run('skopeo', [
      'copy',
      '--dest-creds',
      `${ALICE}:tok-all`,
      '--dest-tls-verify=false',
      `dir:${join(dir, 'image')}`,
      `docker://localhost:${port}/acme/app:2.0`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const direct = await run('skopeo', [
      'inspect',
      '--creds',
      `puller:${PULLER_PASS}`,
      '--tls-verify=false',
      `docker://127.0.0.1:${regPort}/acme/app:2.0`,
    ]);
    assert.equal(direct.code, 0, direct.stderr);
  });

  test('the verifier is asked once per token: a cache, and one shared call for concurrent requests', async () => {
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => request(port, { path: '/v2/', headers: basic(ALICE, 'tok-fresh') })),
    );
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]));
    assert.equal(verifier.calls.get('tok-fresh'), 1, 'concurrent requests share one verification call');
    for (let i = 0; i < 5; i++)
      assert.equal(
        (await request(port, { path: '/v2/acme/app/tags/list', headers: basic(ALICE, 'tok-fresh') })).status,
        200,
      );
    assert.equal(verifier.calls.get('tok-fresh'), 1, 'later requests are answered from the cache');

    // Refusals are cached too (failure_ttl 30s here), and shared the same way.
    const wrong = await Promise.all(
      Array.from({ length: 10 }, () =>
        request(port, { path: '/v2/', headers: basic(ALICE, 'tok-wrong-slow') }),
      ),
    );
    assert.deepEqual(new Set(wrong.map((a) => a.status)), new Set([401]));
    assert.equal(
      (await request(port, { path: '/v2/', headers: basic(ALICE, 'tok-wrong-slow') })).status,
      401,
    );
    assert.equal(verifier.calls.get('tok-wrong-slow'), 1);
  });

  test('the verifier down or too slow: 503 UNAVAILABLE, never a pass', async () => {
    for (const [host, token] of [
      ['down.test', 'tok-alice'],
      ['slow.test', 'tok-unknown-slow'],
    ] as const) {
      const a = await request(port, {
        path: '/v2/acme/app/manifests/1.0',
        headers: { host, ...basic(ALICE, token) },
      });
      assert.equal(a.status, 503, host);
      assert.equal(a.headers['docker-distribution-api-version'], 'registry/2.0');
      const err = (JSON.parse(a.body) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
      assert.equal(err.code, 'UNAVAILABLE');
      assert.match(err.message, /token verifier is unavailable/);
    }
    // A token the slow verifier would accept: still a 503 when the answer comes too late.
    const slow = await request(port, {
      path: '/v2/',
      headers: { host: 'slow.test', ...basic(ALICE, 'tok-fresh') },
    });
    assert.equal(slow.status, 503);
  });

  test('the upstream credential file changes: the next request uses the new value', async () => {
    const manifest = () =>
      request(port, {
        path: '/v2/acme/app/manifests/1.0',
        headers: { ...basic(ALICE, 'tok-alice'), accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
    assert.equal((await manifest()).status, 200);
    writeFileSync(credFile, 'an-expired-registry-password\n');
    const refused = await manifest();
    assert.equal(refused.status, 502, 'the registry refused the new (wrong) credential');
    assert.match(refused.body, /the upstream refused the front door's credential/);
    assert.equal(refused.headers['www-authenticate'], undefined, 'the caller is not asked to log in again');
    writeFileSync(credFile, `${PULLER_PASS}\n`);
    assert.equal((await manifest()).status, 200);
    assert.doesNotMatch(
      gw.output.text(),
      new RegExp(`${PULLER_PASS}|an-expired-registry-password|tok-alice`),
      'credentials never reach the log',
    );
  });
});
