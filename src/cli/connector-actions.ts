import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { stringify } from 'yaml';
import {
  type ConnectConfig,
  connectConfigFromText,
  gatewayText,
  loadConnectConfig,
  redactedConfig,
  STATE_DIR_NAME,
} from '../config/connect.js';
import { controlRequest, notRunning } from '../connector/control-socket.js';
import { logFile, startDaemon, stopDaemon } from '../connector/daemon.js';
import { gatewayHostKeyVerifier } from '../connector/gateway-session.js';
import { runConnector } from '../connector/index.js';
import { deleteKeyPair, readPrivateKey, writeNewKeyPair } from '../connector/key-file.js';
import { type ConnectorStatus, formatStatus } from '../connector/status.js';
import type { ReloadResult } from '../connector/supervisor.js';
import { TENANT_ID } from '../core/ids.js';
import { TetherError } from '../errors/index.js';
import { silentLogger } from '../log/index.js';
import { enroll, TunnelSession } from '../tunnel/client.js';
import { startHeapTrim } from '../tunnel/heap-trim.js';
import { type GatewayTransport, gatewayTransport } from '../tunnel/transports/client.js';
import { VERSION } from './version.js';

const AGENT = `tether-connector/${VERSION}`;

function defaultConfigFile(): string {
  return process.env.TETHER_CONNECT_CONFIG ?? 'connect.yaml';
}

function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
}

function usage(message: string): TetherError {
  return new TetherError('USAGE', message, { status: 400 });
}

/** The state dir of a config, even when the file no longer validates (so `stop` still works). */
function stateDirOf(file: string): string {
  try {
    return loadConnectConfig(file).stateDir;
  } catch (e) {
    if (e instanceof TetherError && e.code === 'CONFIG_UNREADABLE') throw e;
    return resolve(dirname(resolve(file)), process.env.TETHER_STATE_DIR ?? STATE_DIR_NAME);
  }
}

const hostKeyVerifier = (cfg: ConnectConfig, learned?: (fp: string) => void) =>
  gatewayHostKeyVerifier(cfg, (fp, isNew) => {
    if (isNew) learned?.(fp);
  });

function requireTenant(cfg: ConnectConfig): string {
  if (!cfg.tenant) {
    throw new TetherError(
      'CONNECTOR_NO_TENANT',
      `${cfg.file}: tenant is not set (run "tether connector register --token T", or add "tenant: <id>")`,
      { status: 400 },
    );
  }
  return cfg.tenant;
}

/** The way to the gateway (TLS, WebSocket, proxy) as TunnelSession options. */
function transportOptions(transport: GatewayTransport, timeoutMs: number) {
  const dial = transport.dial;
  return {
    gatewayLabel: transport.route.gateway,
    dial: dial ? () => dial(timeoutMs) : undefined,
  };
}

/** A short session of its own (ping, unregister when no connector is running). */
async function openDirect(cfg: ConnectConfig, transport = gatewayTransport(cfg)): Promise<TunnelSession> {
  const tenant = requireTenant(cfg);
  const key = readPrivateKey(cfg.sshKey);
  return TunnelSession.open({
    host: cfg.gateway.host,
    port: cfg.gateway.port,
    ...transportOptions(transport, 8_000),
    username: tenant,
    privateKey: key.privateKey,
    keyFingerprint: key.fingerprint,
    agent: AGENT,
    logger: silentLogger(),
    readyTimeout: 10_000,
    verifyHostKey: hostKeyVerifier(cfg, (fp) =>
      process.stderr.write(`tether: trusting the gateway's host key on first use: ${fp}\n`),
    ),
  });
}

export function configTemplate(o: { gateway?: string; tenant?: string; fingerprint?: string }): string {
  return `# Tether connector configuration (docs/connector.md).
# Relative paths are relative to this file. \${VAR} is replaced by the environment variable VAR.

# The gateway's address ("appliance:" is accepted as another name for it): its SSH port
# "host:port", or where only HTTPS gets out, "tls://host:443" or "wss://host/tunnel".
gateway: "${o.gateway ?? 'gateway.example.com:2222'}"

# Your tenant id on the gateway (the SSH user name).
# "tether connector register --token T" fills it in.
${o.tenant ? `tenant: ${o.tenant}` : '# tenant: acme'}

# This connector's private key. Only its owner may read it (chmod 600).
ssh_key: "./connect_key"

# The SHA256 fingerprint of the gateway's host key, from the gateway's operator. Without it
# the connector trusts the key it sees first and refuses any other later (known_hosts in
# the state dir).
${o.fingerprint ? `gateway_fingerprint: "${o.fingerprint}"` : '# gateway_fingerprint: "SHA256:…"'}

# What this connector forwards: group → repository → service[+scheme]://host[:port][/path]
# Services (default port): smb (445), ssh (22), http (80), https (443), tcp (port required),
# and webdav, cq5, cmis, alfresco with +http (80) or +https (443).
# The connector only ever dials the destinations listed here.
repositories:
  example_group:
    # example_repo: "smb://samba.example.com:139"
    # example_webdav: "webdav+http://webdav.example.com:80/"
    # example_cmis: "cmis+https://cmis.example.com:443/cmisatom"

# Optional (defaults shown):
# state_dir: ./${STATE_DIR_NAME}     # known_hosts, pid file, control socket, daemon log
# keepalive_interval: 15s
# keepalive_count_max: 3
# reconnect: { min_delay: 500ms, max_delay: 30s }
# dial_timeout: 10s
# drain_timeout: 5s                  # a stop lets carried connections finish this long (0: cut at once)
# log_level: info
# metrics_listen: 127.0.0.1:9464    # Prometheus metrics at http://127.0.0.1:9464/metrics (off by default)
# For tls:// and wss:// (docs/transports.md):
# gateway_ca: ./gateway-ca.pem       # the CA that signed the gateway's certificate (else the system CAs)
# proxy: "http://user:password@proxy.example.com:3128"   # else https_proxy / HTTPS_PROXY, minus NO_PROXY
`;
}

/** Sets `tenant:` in connect.yaml, keeping its comments and layout. */
export function withTenant(text: string, tenant: string): string {
  if (/^tenant:.*$/m.test(text)) return text.replace(/^tenant:.*$/m, `tenant: ${tenant}`);
  if (/^#\s*tenant:.*$/m.test(text)) return text.replace(/^#\s*tenant:.*$/m, `tenant: ${tenant}`);
  const m = /^(gateway|appliance):.*$/m.exec(text);
  if (m) {
    const end = m.index + m[0].length;
    return `${text.slice(0, end)}\ntenant: ${tenant}${text.slice(end)}`;
  }
  return `tenant: ${tenant}\n${text}`;
}

async function confirmKeyRemoved(cfg: ConnectConfig, fingerprint: string): Promise<string> {
  let again: TunnelSession;
  try {
    again = await openDirect(cfg);
  } catch (e) {
    if (e instanceof TetherError && e.code === 'GATEWAY_AUTH_FAILED') return fingerprint;
    throw e;
  }
  again.close();
  throw new TetherError(
    'UNREGISTER_FAILED',
    `the gateway did not remove the key ${fingerprint}: it still logs in`,
    {
      status: 500,
    },
  );
}

function describeReload(r: ReloadResult): string {
  const parts: string[] = [];
  if (r.added.length) parts.push(`added ${r.added.join(', ')}`);
  if (r.removed.length) parts.push(`removed ${r.removed.join(', ')}`);
  if (r.changed.length) parts.push(`changed ${r.changed.join(', ')}`);
  if (r.reconnect) parts.push('reconnecting with the new gateway settings');
  const head = `reloaded: ${parts.length ? parts.join('; ') : 'no changes to repositories'}`;
  return [head, ...(r.warnings ?? []).map((w) => `warning: ${w}`)].join('\n');
}

/** The actions of `tether connector …` (loaded only when one of them runs; see connector.ts). */

export function init(o: {
  config?: string;
  gateway?: string;
  tenant?: string;
  fingerprint?: string;
  force?: boolean;
}): void {
  const file = resolve(o.config ?? defaultConfigFile());
  const keyFile = join(dirname(file), 'connect_key');
  if (o.tenant !== undefined && !TENANT_ID.test(o.tenant)) {
    throw usage(
      `--tenant "${o.tenant}": use 1-63 characters a-z, 0-9, "_" or "-", starting with a letter or digit`,
    );
  }
  if (!o.force) {
    for (const f of [file, keyFile]) {
      if (existsSync(f)) {
        throw new TetherError(
          'FILE_EXISTS',
          `${f} already exists (use -f to overwrite it; a new key must be enrolled again)`,
          {
            status: 409,
          },
        );
      }
    }
  }
  const text = configTemplate(o);
  // Validate what we are about to write (a bad --gateway or --fingerprint is caught here).
  connectConfigFromText(text, file, {});
  const key = writeNewKeyPair(keyFile, `tether-connector@${hostname()}`);
  writeFileSync(file, text, { mode: 0o644 });
  const rel = (p: string) => relative(process.cwd(), p) || basename(p);
  out(
    [
      `wrote ${rel(file)}`,
      `wrote ${rel(keyFile)} (private, mode 0600) and ${rel(keyFile)}.pub`,
      `key fingerprint: ${key.fingerprint}`,
      '',
      'next:',
      `  1. edit ${rel(file)}: the gateway address and your repositories`,
      '  2. enroll the key with a one-time token from the gateway operator ("tether tenants enroll <tenant>"):',
      `       tether connector register --token <token>${o.config ? ` -c ${o.config}` : ''}`,
      `     (or send them ${rel(keyFile)}.pub)`,
      `  3. tether connector start${o.config ? ` -c ${o.config}` : ''}`,
    ].join('\n'),
  );
}

export async function register(o: { token: string; config?: string }): Promise<void> {
  const file = o.config ?? defaultConfigFile();
  const cfg = loadConnectConfig(file);
  if (!existsSync(cfg.sshKey)) {
    const k = writeNewKeyPair(cfg.sshKey, `tether-connector@${hostname()}`);
    out(`wrote a new key pair ${cfg.sshKey} (${k.fingerprint})`);
  }
  const key = readPrivateKey(cfg.sshKey);
  const r = await enroll({
    host: cfg.gateway.host,
    port: cfg.gateway.port,
    ...transportOptions(gatewayTransport(cfg), 12_000),
    privateKey: key.privateKey,
    keyFingerprint: key.fingerprint,
    agent: AGENT,
    logger: silentLogger(),
    readyTimeout: 15_000,
    token: o.token.trim(),
    verifyHostKey: hostKeyVerifier(cfg, (fp) => out(`trusting the gateway's host key on first use: ${fp}`)),
  });
  if (r.fingerprint !== key.fingerprint) {
    throw new TetherError(
      'ENROLLMENT_MISMATCH',
      `the gateway enrolled ${r.fingerprint}, but this connector's key is ${key.fingerprint}`,
      { status: 500 },
    );
  }
  const text = readFileSync(cfg.file, 'utf8');
  const next = withTenant(text, r.tenant);
  if (next !== text) {
    connectConfigFromText(next, cfg.file);
    writeFileSync(cfg.file, next);
  }
  out(
    `enrolled key ${r.fingerprint} with tenant ${r.tenant} at ${gatewayText(cfg.gateway, cfg.transport)}\n` +
      `${next !== text ? `wrote "tenant: ${r.tenant}" into ${cfg.file}\n` : ''}` +
      `start the connector: tether connector start${o.config ? ` -c ${o.config}` : ''}`,
  );
}

export async function run(o: { config?: string }): Promise<void> {
  // what a transfer leaves in V8's heap goes back once the connector is quiet, as in the gateway
  const stopTrim = startHeapTrim();
  try {
    const r = await runConnector({ configFile: o.config ?? defaultConfigFile(), agent: AGENT });
    if (r.error) throw r.error;
  } finally {
    stopTrim();
  }
}

export async function start(o: { config?: string }): Promise<void> {
  const file = resolve(o.config ?? defaultConfigFile());
  const cfg = loadConnectConfig(file);
  // Problems the user must fix are reported here, not in a log file.
  requireTenant(cfg);
  readPrivateKey(cfg.sshKey);
  const script = process.argv[1];
  if (!script) throw new TetherError('INTERNAL', 'cannot tell how this program was started', { status: 500 });
  const st = await startDaemon({
    configFile: file,
    stateDir: cfg.stateDir,
    command: [process.execPath, ...process.execArgv, script],
  });
  out(`connector started (pid ${st.pid}); log: ${logFile(cfg.stateDir)}\nsee "tether connector status"`);
}

export async function stop(o: { config?: string }): Promise<void> {
  const stateDir = stateDirOf(o.config ?? defaultConfigFile());
  const pid = await stopDaemon(stateDir);
  out(pid === undefined ? 'the connector was not running' : `connector stopped (pid ${pid})`);
}

export async function status(o: { config?: string; json?: boolean }): Promise<void> {
  const stateDir = stateDirOf(o.config ?? defaultConfigFile());
  let st: ConnectorStatus;
  try {
    st = (await controlRequest(stateDir, 'status')) as ConnectorStatus;
  } catch (e) {
    if (o.json && e instanceof TetherError && e.code === 'CONNECTOR_NOT_RUNNING') {
      out(JSON.stringify({ running: false, error: e.message }));
    }
    throw e;
  }
  out(o.json ? JSON.stringify({ running: true, ...st }, null, 2) : formatStatus(st));
}

export async function reload(o: { config?: string }): Promise<void> {
  const file = o.config ?? defaultConfigFile();
  // Validate here too, so the user sees the problem (the connector keeps its old config).
  loadConnectConfig(file);
  const r = (await controlRequest(stateDirOf(file), 'reload')) as ReloadResult;
  out(describeReload(r));
}

export function config(o: { config?: string; json?: boolean }): void {
  const cfg = loadConnectConfig(o.config ?? defaultConfigFile());
  const shown: Record<string, unknown> = redactedConfig(cfg);
  try {
    shown.ssh_key_fingerprint = readPrivateKey(cfg.sshKey).fingerprint;
  } catch (e) {
    shown.ssh_key_problem = (e as Error).message;
  }
  out(o.json ? JSON.stringify(shown, null, 2) : stringify(shown));
}

export async function ping(o: { config?: string; json?: boolean }): Promise<void> {
  const file = o.config ?? defaultConfigFile();
  const cfg = loadConnectConfig(file);
  const gw = gatewayText(cfg.gateway, cfg.transport);
  let ms: number;
  let route: string;
  let transport: string;
  let session: 'running connector' | 'new session';
  let setupMs: number | undefined;
  try {
    ms = ((await controlRequest(cfg.stateDir, 'ping')) as { ms: number }).ms;
    const st = (await controlRequest(cfg.stateDir, 'status')) as ConnectorStatus;
    route = st.route ?? gatewayText(cfg.gateway, cfg.transport);
    transport = st.transport ?? cfg.transport.kind;
    session = 'running connector';
  } catch (e) {
    if (!(e instanceof TetherError) || e.code !== 'CONNECTOR_NOT_RUNNING') throw e;
    const t = gatewayTransport(cfg);
    const start = process.hrtime.bigint();
    const direct = await openDirect(cfg, t);
    setupMs = Number(process.hrtime.bigint() - start) / 1e6;
    try {
      ms = await direct.ping();
    } finally {
      direct.close();
    }
    route = t.route.text;
    transport = t.route.transport;
    session = 'new session';
  }
  if (o.json) {
    out(JSON.stringify({ gateway: gw, ms, transport, route, session, setup_ms: setupMs ?? null }));
    return;
  }
  out(
    `pong from ${gw} in ${ms.toFixed(1)} ms\n` +
      `  route: ${route}\n` +
      `  session: ${session === 'running connector' ? "the running connector's" : `a new one, set up in ${setupMs!.toFixed(0)} ms`}`,
  );
}

export async function unregister(o: { config?: string }): Promise<void> {
  const file = o.config ?? defaultConfigFile();
  const cfg = loadConnectConfig(file);
  const key = readPrivateKey(cfg.sshKey);
  const session = await openDirect(cfg);
  let fingerprint: string;
  try {
    fingerprint = await session.unregister();
  } catch (e) {
    if (!(e instanceof TetherError) || e.code !== 'GATEWAY_SESSION_FAILED') throw e;
    // The gateway ended the session before answering: the key is gone if it no longer logs in.
    fingerprint = await confirmKeyRemoved(cfg, key.fingerprint);
  } finally {
    session.close();
  }
  let stopped: number | undefined;
  try {
    stopped = await stopDaemon(cfg.stateDir);
  } catch (e) {
    if (!(e instanceof TetherError) || e.code !== notRunning(cfg.stateDir).code) throw e;
  }
  const removed = fingerprint === key.fingerprint ? deleteKeyPair(cfg.sshKey) : [];
  out(
    [
      `removed key ${fingerprint} from tenant ${cfg.tenant} at ${gatewayText(cfg.gateway, cfg.transport)}`,
      ...(stopped !== undefined ? [`stopped the running connector (pid ${stopped})`] : []),
      ...removed.map((p) => `deleted ${p}`),
    ].join('\n'),
  );
}
