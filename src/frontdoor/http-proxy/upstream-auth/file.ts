import { readFileSync, statSync } from 'node:fs';
import type { Logger } from '../../../log/index.js';
import {
  credentialInvalid,
  credentialUnavailable,
  type SecretCheck,
  type SecretProvider,
  type SecretShare,
} from './types.js';

/**
 * A credential read from a file (e.g. written by a cron job), re-read only when the file
 * changes: every request costs one stat(2), and the request after a change sees the new
 * value. Surrounding whitespace is trimmed. When the file goes missing or empty, the last good
 * value stays in use and the log says so once. A value that cannot be sent (`check`) is never
 * used: it is logged with the file's name and the route answers 502 until the file is fixed.
 */
export class FileSecret implements SecretProvider {
  private value: string | undefined;
  private stamp = '';
  /** When the value in use was written (the file's change time, ms): the newest wins. */
  private valueAt = Number.NEGATIVE_INFINITY;
  private unsubscribe?: () => void;
  private problem: string | undefined;
  /** Why the file's current content cannot be used (set until a good value is read). */
  private invalid: string | undefined;

  constructor(
    private readonly file: string,
    private readonly log: Logger,
    private readonly check?: SecretCheck,
    private readonly share?: SecretShare,
  ) {}

  async start(): Promise<void> {
    this.unsubscribe = this.share?.onValue((value, at) => {
      // another worker read a newer version: it is this one's last good value too (the next
      // request here still looks at the file itself)
      if (at < this.valueAt) return;
      this.value = value;
      this.valueAt = at;
      this.invalid = undefined;
    });
    this.refresh();
    if (this.value === undefined && this.invalid === undefined) {
      this.log.error(
        { event: 'http_proxy.credential_file.unusable', file: this.file, reason: this.problem },
        `upstream credential file ${this.file} is not usable yet (${this.problem}); requests get 503 until it is`,
      );
    }
  }

  stop(): void {
    this.unsubscribe?.();
  }

  current(): string {
    this.refresh();
    if (this.invalid !== undefined) throw credentialInvalid(`file ${this.file}: ${this.invalid}`);
    if (this.value === undefined)
      throw credentialUnavailable(`file ${this.file}: ${this.problem ?? 'not read'}`);
    return this.value;
  }

  private refresh(): void {
    let stamp: string;
    let changedAt: number;
    try {
      const st = statSync(this.file);
      stamp = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      changedAt = st.ctimeMs;
    } catch (e) {
      this.fail(`cannot read it: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      return;
    }
    if (stamp === this.stamp) return;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8').trim();
    } catch (e) {
      this.fail(`cannot read it: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      return;
    }
    if (text === '') {
      this.fail('it is empty');
      this.stamp = stamp;
      return;
    }
    const invalid = this.check?.(text);
    if (invalid !== undefined) {
      this.stamp = stamp;
      this.value = undefined;
      this.valueAt = changedAt; // a value another worker read before this version does not replace it
      if (this.invalid !== invalid) {
        this.invalid = invalid;
        this.log.error(
          { event: 'http_proxy.credential_file.invalid', file: this.file, reason: invalid },
          `upstream credential file ${this.file} cannot be used: ${invalid}; requests get 502 until the file holds a valid value`,
        );
      }
      return;
    }
    this.invalid = undefined;
    const first = this.value === undefined;
    this.value = text;
    this.valueAt = changedAt;
    this.stamp = stamp;
    this.problem = undefined;
    this.share?.publish(text, changedAt);
    this.log.info(
      { event: 'http_proxy.credential_file.loaded', file: this.file },
      first
        ? `upstream credential read from ${this.file}`
        : `upstream credential file ${this.file} changed; using the new value`,
    );
  }

  private fail(why: string): void {
    if (this.problem === why) return;
    this.problem = why;
    this.stamp = '';
    this.log.warn(
      { event: 'http_proxy.credential_file.unusable', file: this.file, reason: why },
      this.value === undefined
        ? `upstream credential file ${this.file}: ${why}`
        : `upstream credential file ${this.file}: ${why}; keeping the last good value`,
    );
  }
}
