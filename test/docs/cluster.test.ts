import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { run, tempDir } from '../helpers/util.js';
import { fencedBlocks } from './markdown.js';

/** The load balancer configurations in docs/cluster.md are accepted by haproxy and nginx. */
describe('docs/cluster.md load balancer configurations', () => {
  const blocks = fencedBlocks('docs/cluster.md');
  const dir = tempDir('tether-docs-lb-');

  test('haproxy -c accepts the haproxy configuration', async () => {
    const cfg = blocks.find((b) => b.info === 'haproxy');
    assert.ok(cfg, 'no ```haproxy block');
    const file = join(dir, 'haproxy.cfg');
    writeFileSync(file, `${cfg.body}\n`);
    const r = await run('haproxy', ['-c', '-f', file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  test('nginx -t accepts the nginx stream configuration', async (t) => {
    const cfg = blocks.find((b) => b.info === 'nginx');
    assert.ok(cfg, 'no ```nginx block');
    // Debian builds the stream module as a dynamic module (package libnginx-mod-stream).
    const built = await run('nginx', ['-V']);
    let prefix = '';
    if (built.stderr.includes('--with-stream=dynamic')) {
      const so = '/usr/lib/nginx/modules/ngx_stream_module.so';
      if (!existsSync(so)) {
        t.skip('nginx has no stream module here (apt-get install libnginx-mod-stream)');
        return;
      }
      prefix = `load_module ${so};\n`;
    }
    const file = join(dir, 'nginx.conf');
    writeFileSync(file, `${prefix}${cfg.body}\n`);
    const r = await run('nginx', [
      '-t',
      '-p',
      dir,
      '-c',
      file,
      '-g',
      `pid ${join(dir, 'nginx.pid')}; error_log stderr;`,
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stderr, /syntax is ok/);
  });
});
