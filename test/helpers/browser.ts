import { join } from 'node:path';
import { type Browser, chromium, type Locator } from 'playwright-core';
import { ROOT, waitFor } from './util.js';

/** Where browser tests save their screenshots. */
export const ARTIFACTS = join(ROOT, 'test-artifacts');

/** Debian's Chromium, headless, with nothing that reaches out to the network on its own. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A locator's text with runs of white space folded to one space. */
export async function textOf(l: Locator): Promise<string> {
  return ((await l.textContent()) ?? '').replace(/\s+/g, ' ').trim();
}

/** Waits until the (first) locator's text matches; resolves with that text. */
export async function waitText(l: Locator, re: RegExp, what: string, timeout = 10_000): Promise<string> {
  return waitFor(
    async () => {
      const t = (await l.count()) > 0 ? await textOf(l.first()) : '';
      return re.test(t) ? t : undefined;
    },
    { timeout, what: `${what} (${re})` },
  );
}
