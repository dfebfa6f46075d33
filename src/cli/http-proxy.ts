import type { Command } from 'commander';
import { lazy } from './lazy.js';

/** scrypt's default cost as the help shows it; a test checks it against DEFAULT_SCRYPT.N. */
export const HELP_DEFAULT_SCRYPT_N = 16_384;

export function registerHttpProxy(program: Command): void {
  const cmd = program
    .command('http-proxy')
    .description('tools for the HTTP front door (http_proxy in gateway.yaml)');

  cmd
    .command('hash-token [name]')
    .description(
      'hash an API token for the static verifier\'s file (scrypt); reads the token from stdin (or --token-file) and prints "name:hash[:scopes]", or the bare hash without a name',
    )
    .option('--token-file <file>', 'read the token from this file instead of stdin')
    .option(
      '--scopes <list>',
      'comma-separated repositories (or paths) the token may access; default: everything',
    )
    .option('--cost <N>', `scrypt cost N, a power of two (default ${HELP_DEFAULT_SCRYPT_N})`)
    .action(lazy(() => import('./http-proxy-actions.js'), 'hashTokenCommand'));
}
