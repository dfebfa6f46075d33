// @ts-check
/** Small DOM helpers: every text goes through textContent, never innerHTML. */

/**
 * Builds an element: h('a', { href: '/x', class: 'link', onclick: fn }, 'text', child).
 * Props starting with "on" are listeners; `dataset` sets data-* attributes.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Number.POSITIVE_INFINITY)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Bytes and rates as the gateway and the CLI write them (decimal units): 1536 → "1.54 kB". */
export { formatBytes as bytes, formatRate as rate } from './units.js';

/** The message of something thrown, for the page. */
export function messageOf(e) {
  return e instanceof Error ? e.message : String(e);
}

/** An ISO time → "3 min ago". */
export function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}
