import type { Duplex } from 'node:stream';

/**
 * Joins two byte streams both ways (a TCP socket and an SSH channel). Half-closes are passed
 * on; an error or a full close on either side tears both down, then `onClose` runs once.
 */
export function splice(a: Duplex, b: Duplex, onClose?: () => void): void {
  let done = false;
  const close = () => {
    if (done) return;
    done = true;
    a.destroy();
    b.destroy();
    onClose?.();
  };
  a.on('error', close);
  b.on('error', close);
  a.on('close', close);
  b.on('close', close);
  a.pipe(b);
  b.pipe(a);
}
