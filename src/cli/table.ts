import { CONTROL_CHARS } from '../core/ids.js';

/**
 * Text from the gateway as it may reach a terminal: control characters (ESC, CR, BEL, C1, the
 * bidi overrides) are shown escaped ("\x1b", "\u202e"), so a tenant's metadata cannot move the
 * cursor, rewrite earlier lines or change the terminal's title.
 */
export function printable(s: string): string {
  return s.replace(CONTROL_CHARS, (c) => {
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}

/** `printable` for multi-line output: every line on its own, the line breaks kept. */
export function printableLines(text: string): string {
  return text.split('\n').map(printable).join('\n');
}

/** Renders rows as aligned columns under a header; every cell goes through `printable`. */
export function table(header: string[], rows: string[][]): string {
  const safe = rows.map((r) => r.map((c) => printable(String(c ?? ''))));
  const widths = header.map((h, i) => Math.max(h.length, ...safe.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...safe.map(line)].join('\n');
}
