import { type ChildProcess, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, listening, spawnTracked, tempDir, waitFor } from './util.js';

const MODULES = '/usr/lib/apache2/modules';
export const haveApache = spawnSync('apache2', ['-v']).status === 0;

export interface TestDav {
  port: number;
  /** The WebDAV root on disk. */
  root: string;
  /** Lines of Apache's access log: every request that reached it. */
  requests(): string[];
  stop(): Promise<void>;
}

/** Apache httpd with mod_dav on a free loopback port, with everything in a temp dir. */
export async function startApacheDav(): Promise<TestDav> {
  const dir = tempDir('tether-dav-');
  const root = join(dir, 'dav');
  for (const d of [root, join(dir, 'lock'), join(dir, 'run'), join(dir, 'logs')]) mkdirSync(d);
  // As root, httpd serves as www-data: the DAV root and the lock dir must be writable by it.
  chmodSync(dir, 0o755);
  chmodSync(root, 0o777);
  chmodSync(join(dir, 'lock'), 0o777);
  const port = await freePort();
  const root0 = process.getuid?.() === 0;
  const conf = join(dir, 'httpd.conf');
  writeFileSync(
    conf,
    `ServerRoot ${dir}
ServerName localhost
Listen 127.0.0.1:${port}
PidFile ${dir}/run/httpd.pid
DefaultRuntimeDir ${dir}/run
ErrorLog ${dir}/logs/error.log
LogFormat "%h %m %U %>s" short
CustomLog ${dir}/logs/access.log short
LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule dav_module ${MODULES}/mod_dav.so
LoadModule dav_fs_module ${MODULES}/mod_dav_fs.so
${root0 ? 'User www-data\nGroup www-data\n' : ''}DocumentRoot ${root}
DavLockDB ${dir}/lock/DavLock
<Directory ${root}>
  Dav On
  Require all granted
</Directory>
`,
  );
  writeFileSync(join(dir, 'logs', 'access.log'), '');
  const p: ChildProcess = spawnTracked('apache2', ['-f', conf, '-D', 'FOREGROUND'], {
    stdio: 'ignore',
    detached: true,
  });
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  const stop = async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    try {
      process.kill(-p.pid!, 'SIGTERM');
    } catch {
      p.kill('SIGTERM');
    }
    await exited;
  };
  try {
    await waitFor(
      () => {
        if (p.exitCode !== null) {
          let log = '';
          try {
            log = readFileSync(join(dir, 'logs', 'error.log'), 'utf8');
          } catch {}
          throw new Error(`apache2 exited with ${p.exitCode}: ${log}`);
        }
        return listening(port);
      },
      { timeout: 15_000, what: 'apache2 to listen' },
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    port,
    root,
    requests: () =>
      readFileSync(join(dir, 'logs', 'access.log'), 'utf8')
        .split('\n')
        .filter((l) => l !== ''),
    stop,
  };
}
