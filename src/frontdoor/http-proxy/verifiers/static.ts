import { readFileSync, statSync } from 'node:fs';
import type { Clock } from '../../../core/clock.js';
import { TetherError } from '../../../errors/index.js';
import type { Logger } from '../../../log/index.js';
import { DUMMY_HASH, type ParsedHash, parseTokenHash, verifyToken } from './token-hash.js';
import type { CallerCredential, Verdict, Verifier } from './types.js';

export interface TokenEntry {
  /** The e-mail (basic-token) or a name for the token (bearer). */
  name: string;
  hash: ParsedHash;
  /** What the holder may access; null = everything. */
  scopes: string[] | null;
}

export interface ParsedTokenFile {
  entries: TokenEntry[];
  problems: string[];
}

/**
 * Parses the static token file: one `name:scrypt$N$r$p$salt$hash[:scope,scope…]` per line;
 * blank lines and `#` comments are skipped. Problems name the line, never its hash.
 */
export function parseTokenFile(text: string): ParsedTokenFile {
  const entries: TokenEntry[] = [];
  const problems: string[] = [];
  const seen = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = `line ${i + 1}`;
    const parts = line.split(':');
    if (parts.length < 2 || parts.length > 3) {
      problems.push(`${at}: expected "name:hash" or "name:hash:scope,scope"`);
      return;
    }
    const [name, hashText, scopeText] = parts as [string, string, string | undefined];
    if (!/^[^\s:]{1,256}$/.test(name)) {
      problems.push(`${at}: the name must be 1-256 characters without spaces`);
      return;
    }
    const key = name.toLowerCase();
    if (seen.has(key)) {
      problems.push(`${at}: ${name} appears twice`);
      return;
    }
    const hash = parseTokenHash(hashText);
    if (typeof hash === 'string') {
      problems.push(`${at}: ${hash}`);
      return;
    }
    let scopes: string[] | null = null;
    if (scopeText !== undefined) {
      scopes = scopeText
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    }
    seen.add(key);
    entries.push({ name, hash, scopes });
  });
  return { entries, problems };
}

function fileStamp(file: string): string {
  const st = statSync(file, { bigint: true });
  return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/**
 * Verifies tokens against a file of scrypt hashes. The file is read at start (a bad file stops
 * the gateway from starting) and again whenever it changes (checked at most once per
 * `checkEveryMs`); a bad new version is refused with an error in the log and the previous one
 * stays in force.
 */
export class StaticVerifier implements Verifier {
  private byName = new Map<string, TokenEntry>();
  private entries: TokenEntry[] = [];
  private stamp = '';
  private gen = 0;
  private checkedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly file: string,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly checkEveryMs = 1_000,
  ) {
    let stamp: string;
    let text: string;
    try {
      stamp = fileStamp(file);
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new TetherError(
        'TOKEN_FILE_UNREADABLE',
        `cannot read token file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        {
          status: 400,
        },
      );
    }
    const parsed = parseTokenFile(text);
    if (parsed.problems.length > 0) {
      throw new TetherError('TOKEN_FILE_INVALID', `token file ${file}: ${parsed.problems.join('; ')}`, {
        status: 400,
      });
    }
    this.install(parsed.entries, stamp);
    this.checkedAt = clock.now();
  }

  get size(): number {
    return this.entries.length;
  }

  generation(): number {
    const now = this.clock.now();
    if (now - this.checkedAt >= this.checkEveryMs) {
      this.checkedAt = now;
      this.reloadIfChanged();
    }
    return this.gen;
  }

  /** The stamp of the file version in force (inode, size, times): the same in every worker. */
  version(): string {
    this.generation();
    return this.stamp;
  }

  async verify(c: CallerCredential): Promise<Verdict> {
    this.generation();
    if (c.username !== undefined) {
      const e = this.byName.get(c.username.toLowerCase());
      if (!e) {
        await verifyToken(c.token, DUMMY_HASH);
        return { ok: false, reason: 'unknown user' };
      }
      return (await verifyToken(c.token, e.hash))
        ? { ok: true, subject: e.name, scopes: e.scopes }
        : { ok: false, reason: 'wrong token' };
    }
    for (const e of this.entries) {
      if (await verifyToken(c.token, e.hash)) return { ok: true, subject: e.name, scopes: e.scopes };
    }
    if (this.entries.length === 0) await verifyToken(c.token, DUMMY_HASH);
    return { ok: false, reason: 'unknown token' };
  }

  private install(entries: TokenEntry[], stamp: string): void {
    this.entries = entries;
    this.byName = new Map(entries.map((e) => [e.name.toLowerCase(), e]));
    this.stamp = stamp;
    this.gen++;
  }

  private reloadIfChanged(): void {
    let stamp: string;
    try {
      stamp = fileStamp(this.file);
      if (stamp === this.stamp) return;
      const parsed = parseTokenFile(readFileSync(this.file, 'utf8'));
      if (parsed.problems.length > 0) {
        this.stamp = stamp;
        this.log.error(
          { event: 'http_proxy.token_file.invalid', file: this.file, problems: parsed.problems },
          `token file ${this.file} changed but is invalid; keeping the previous version`,
        );
        return;
      }
      this.install(parsed.entries, stamp);
      this.log.info(
        { event: 'http_proxy.token_file.reloaded', file: this.file, tokens: parsed.entries.length },
        'token file reloaded',
      );
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      if (this.stamp !== `error:${code}`) {
        this.log.error(
          { event: 'http_proxy.token_file.unreadable', file: this.file, code },
          `cannot read token file ${this.file} (${code}); keeping the previous version`,
        );
      }
      this.stamp = `error:${code}`;
    }
  }
}
