import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, run, tempDir } from './util.js';

export interface TestPostgres {
  port: number;
  /** A URL to a fresh, empty database. */
  newDatabase(name?: string): Promise<string>;
  stop(): Promise<void>;
}

function pgBin(): string {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) throw new Error('PostgreSQL is not installed (apt-get install postgresql)');
  const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a));
  return join(base, versions[0]!, 'bin');
}

/** A throwaway PostgreSQL server (initdb in a temp dir, loopback, trust auth), run as the postgres user. */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = pgBin();
  const root = tempDir('tether-pg-');
  const dataDir = join(root, 'data');
  mkdirSync(dataDir);
  const asRoot = process.getuid?.() === 0;
  const pgUser = asRoot ? ['runuser', '-u', 'postgres', '--'] : [];
  if (asRoot) {
    chmodSync(root, 0o755);
    const { uid, gid } = await userIds('postgres');
    chownSync(dataDir, uid, gid);
  }
  const exec = (cmd: string, args: string[]) => {
    const full = [...pgUser, join(bin, cmd), ...args];
    return run(full[0]!, full.slice(1), { timeout: 60_000 });
  };
  const init = await exec('initdb', [
    '-D',
    dataDir,
    '-A',
    'trust',
    '-U',
    'postgres',
    '--no-sync',
    '-E',
    'UTF8',
  ]);
  if (init.code !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = await freePort();
  const opts = `-p ${port} -k ${dataDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const start = await exec('pg_ctl', [
    '-D',
    dataDir,
    '-o',
    opts,
    '-l',
    join(dataDir, 'server.log'),
    '-w',
    '-t',
    '60',
    'start',
  ]);
  if (start.code !== 0) throw new Error(`pg_ctl start failed: ${start.stdout}${start.stderr}`);
  let n = 0;
  return {
    port,
    async newDatabase(name?: string) {
      const db = name ?? `t${process.pid}_${++n}`;
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
      await c.connect();
      await c.query(`CREATE DATABASE "${db}"`);
      await c.end();
      return `postgres://postgres@127.0.0.1:${port}/${db}`;
    },
    async stop() {
      await exec('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
    },
  };
}

async function userIds(name: string): Promise<{ uid: number; gid: number }> {
  const uid = await run('id', ['-u', name]);
  const gid = await run('id', ['-g', name]);
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}
