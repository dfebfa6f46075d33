import { readFileSync } from 'node:fs';
import { TetherError } from '../errors/index.js';
import { DEFAULT_SCRYPT, hashToken, parseTokenHash } from '../frontdoor/http-proxy/verifiers/token-hash.js';

function bad(message: string): TetherError {
  return new TetherError('BAD_REQUEST', message, { status: 400 });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The first line of the input, without its line ending; surrounding spaces are kept out. */
function firstLine(text: string): string {
  return (text.split(/\r?\n/)[0] ?? '').trim();
}

/** `tether http-proxy hash-token` (loaded only when that command runs). */
export async function hashTokenCommand(
  name: string | undefined,
  o: { tokenFile?: string; scopes?: string; cost?: string },
): Promise<void> {
  if (name !== undefined && !/^[^\s:]{1,256}$/.test(name)) {
    throw bad(`invalid name ${JSON.stringify(name)}: 1-256 characters without spaces or ":"`);
  }
  let N = DEFAULT_SCRYPT.N;
  if (o.cost !== undefined) {
    N = Number(o.cost);
    if (!Number.isInteger(N) || N < 2 || N > 1_048_576 || (N & (N - 1)) !== 0) {
      throw bad(`invalid --cost ${JSON.stringify(o.cost)}: a power of two from 2 to 1048576`);
    }
  }
  const scopes = o.scopes
    ?.split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (scopes?.some((s) => s.includes(':') || /\s/.test(s)))
    throw bad('scopes must not contain ":" or spaces');
  if (name === undefined && scopes !== undefined)
    throw bad('--scopes needs a name (the line is "name:hash:scopes")');
  let input: string;
  if (o.tokenFile !== undefined) {
    try {
      input = readFileSync(o.tokenFile, 'utf8');
    } catch (e) {
      throw bad(`cannot read ${o.tokenFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  } else {
    if (process.stdin.isTTY) process.stderr.write('token (input is shown; end with Enter, then Ctrl-D): ');
    input = await readStdin();
  }
  const token = firstLine(input);
  if (token === '') throw bad('no token given (pipe it on stdin or use --token-file)');
  const hash = await hashToken(token, { ...DEFAULT_SCRYPT, N });
  if (typeof parseTokenHash(hash) === 'string')
    throw new Error('internal error: the new hash does not parse');
  const line =
    name === undefined ? hash : `${name}:${hash}${scopes && scopes.length > 0 ? `:${scopes.join(',')}` : ''}`;
  process.stdout.write(`${line}\n`);
}
