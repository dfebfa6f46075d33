/**
 * The ratios as a bar chart (SVG, no dependencies): one bar per figure, Tether against its
 * reference measured in the same run, on a log scale where 1.0 = parity; a tick marks the target.
 */

export interface Bar {
  label: string;
  /** Tether ÷ reference, oriented so that higher is better. */
  value: number;
  /** The target ratio, when there is one. */
  target?: number;
  /** Shown right of the bar, e.g. "1.9 vs 6.2 Gbit/s". */
  note?: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function ratioChart(title: string, subtitle: string, bars: Bar[]): string {
  const rowH = 30;
  const left = 370;
  const width = 1120;
  const plotW = 420;
  const top = 70;
  const height = top + bars.length * rowH + 66;
  const lo = Math.log2(1 / 16);
  const hi = Math.log2(32);
  const x = (v: number) => left + ((Math.log2(Math.min(32, Math.max(1 / 16, v))) - lo) / (hi - lo)) * plotW;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="20" y="28" font-size="18" font-weight="600">${esc(title)}</text>`,
    `<text x="20" y="50" fill="#555">${esc(subtitle)}</text>`,
  ];
  for (const t of [1 / 16, 1 / 4, 1, 4, 16]) {
    out.push(
      `<line x1="${x(t)}" y1="${top - 6}" x2="${x(t)}" y2="${top + bars.length * rowH}" stroke="${t === 1 ? '#333' : '#ddd'}" stroke-width="${t === 1 ? 1.5 : 1}"/>`,
      `<text x="${x(t)}" y="${top + bars.length * rowH + 18}" text-anchor="middle" fill="#555">${t >= 1 ? `${t}×` : `1/${1 / t}×`}</text>`,
    );
  }
  out.push(
    `<text x="${x(1)}" y="${top + bars.length * rowH + 36}" text-anchor="middle" fill="#555">Tether ÷ reference (log scale; right of 1× is better than the reference)</text>`,
  );
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const ok = b.target === undefined || b.value >= b.target;
    // Green/red only where there is a target; other bars are context (e.g. against direct loopback).
    const color = b.target === undefined ? '#5c7fa3' : ok ? '#2e7d32' : '#c62828';
    const v = Number.isFinite(b.value) ? b.value : 0;
    const x0 = x(1);
    const x1 = v > 0 ? x(v) : x0;
    out.push(`<text x="${left - 10}" y="${y + 19}" text-anchor="end">${esc(b.label)}</text>`);
    if (v > 0) {
      out.push(
        `<rect x="${Math.min(x0, x1)}" y="${y + 6}" width="${Math.max(2, Math.abs(x1 - x0))}" height="${rowH - 12}" fill="${color}" opacity="0.85"/>`,
      );
    }
    if (b.target !== undefined) {
      const xt = x(b.target);
      out.push(
        `<line x1="${xt}" y1="${y + 2}" x2="${xt}" y2="${y + rowH - 2}" stroke="#000" stroke-width="2" stroke-dasharray="3,2"/>`,
      );
    }
    const label = v > 0 ? `${v >= 10 ? v.toFixed(0) : v.toFixed(2)}×` : 'n/a';
    out.push(
      `<text x="${left + plotW + 12}" y="${y + 19}" font-weight="600" fill="${color}">${label}</text>`,
      `<text x="${left + plotW + 70}" y="${y + 19}" fill="#444">${esc(b.note ?? '')}</text>`,
    );
  });
  out.push(
    `<text x="${width - 20}" y="${height - 8}" text-anchor="end" fill="#888" font-size="11">dashed tick: target · green: target met · red: not met · blue: no target (context)</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
