import { z } from 'zod';
import { parseDuration } from '../core/units.js';
import { parseHostPort } from './load.js';

/** "host:port" listen address, validated and parsed. */
export const listenAddr = z.string().transform((s, ctx) => {
  const hp = parseHostPort(s);
  if (!hp) {
    ctx.addIssue({
      code: 'custom',
      message: `"${s}" is not a listen address (use "host:port", e.g. "127.0.0.1:2222")`,
    });
    return z.NEVER;
  }
  return hp;
});

export type ListenAddr = { host: string; port: number };

/** A duration: "500ms", "60s", "5m", "8h", or a number of seconds → milliseconds. */
export const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === null) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(v)} is not a duration (use e.g. "500ms", "60s", "8h")`,
    });
    return z.NEVER;
  }
  return ms;
});

/** Longest `drain_timeout` accepted (gateway and connector): a service manager waits this long for a stop. */
export const MAX_DRAIN_TIMEOUT = 3_600_000;

export const portRange = z.string().transform((s, ctx) => {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(s.trim());
  const lo = m ? Number(m[1]) : Number.NaN;
  const hi = m ? Number(m[2]) : Number.NaN;
  if (!m || lo < 1 || hi > 65535 || lo > hi) {
    ctx.addIssue({
      code: 'custom',
      message: `"${s}" is not a port range (use "low-high", e.g. "2200-5199")`,
    });
    return z.NEVER;
  }
  return { low: lo, high: hi };
});

export const tlsFiles = z.strictObject({ cert: z.string().min(1), key: z.string().min(1) });

/** An http:// or https:// URL (an identity provider, an upstream). */
export const httpUrl = z.string().refine(
  (s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  },
  { message: 'must be an http:// or https:// URL' },
);
