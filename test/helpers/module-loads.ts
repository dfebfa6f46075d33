import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, tempDir } from './util.js';

/**
 * Records which modules a process loads: a module loader hook (`node --import <hook>`, or in
 * NODE_OPTIONS) appends every module URL the process loads to the file named by
 * TETHER_TEST_LOADS. Each `recorder()` gives a fresh file and its environment.
 */
export function moduleLoadRecorder(): {
  hook: string;
  recorder(): { env: { TETHER_TEST_LOADS: string }; modules(): string[] };
} {
  const dir = tempDir('tether-loads-');
  const hook = join(dir, 'record-loads.mjs');
  writeFileSync(
    hook,
    `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(\`
import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.TETHER_TEST_LOADS, url + '\\\\n');
  return next(url, context);
}\`));
`,
  );
  let n = 0;
  return {
    hook,
    recorder() {
      const out = join(dir, `loads-${n++}.txt`);
      writeFileSync(out, '');
      return {
        env: { TETHER_TEST_LOADS: out },
        /** The modules loaded so far, relative to the repository ("dist/cli/…", "node_modules/pg/…"). */
        modules: () =>
          readFileSync(out, 'utf8')
            .split('\n')
            .filter((u) => u.startsWith('file://'))
            .map((u) =>
              new URL(u).pathname.replace(`${ROOT}/`, '').replace(/^.*\/node_modules\//, 'node_modules/'),
            ),
      };
    },
  };
}
