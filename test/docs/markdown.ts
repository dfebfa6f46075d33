import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/util.js';

export interface RunnableBlock {
  /** 1-based line of the opening fence. */
  line: number;
  code: string;
  /** The ```text output block right after it, if any. */
  expected?: string;
}

/** Fenced blocks of a Markdown file: info string, 1-based line of the fence, body. */
export function fencedBlocks(file: string): Array<{ info: string; line: number; body: string }> {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const out: Array<{ info: string; line: number; body: string }> = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(```+)(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !lines[j]!.startsWith(open[1]!)) body.push(lines[j++]!);
    out.push({ info: open[2]!.trim(), line: i + 1, body: body.join('\n') });
    i = j;
  }
  return out;
}

/** The ```sh test blocks of a page, each with the ```text output block that follows it. */
export function runnableBlocks(file: string): RunnableBlock[] {
  const blocks = fencedBlocks(file);
  const out: RunnableBlock[] = [];
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!;
    if (b.info !== 'sh test') continue;
    const next = blocks[i + 1];
    out.push({ line: b.line, code: b.body, expected: next?.info === 'text output' ? next.body : undefined });
  }
  return out;
}

/** A documented line as a pattern: `…` matches anything, runs of spaces match any white space. */
export function linePattern(line: string): RegExp {
  const parts = line
    .trim()
    .split('…')
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\s+/g, '\\s+'));
  return new RegExp(parts.join('.*'));
}
