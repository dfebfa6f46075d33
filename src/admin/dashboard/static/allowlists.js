// @ts-check
import { h } from './dom.js';
/** @typedef {import('../../schemas.js').TenantView} TenantView (the admin API's shape of a tenant) */

/**
 * The tenant's source-address allowlists, read only: `allow_from` of the tenant and of each
 * repository (callers of every front door), `tunnel_from` (where its connectors log in from).
 * They are changed with `tether tenants change --allow-from` or the admin API.
 * @param {TenantView} v
 */
export function allowlistPanel(v) {
  const repos = v.forwards.filter((f) => f.allow_from);
  if (!v.allow_from && !v.tunnel_from && repos.length === 0) return null;
  const row = (label, list, field) =>
    h(
      'li',
      { dataset: { field } },
      h('span', { class: 'muted' }, `${label}: `),
      h('span', { class: 'mono' }, list),
    );
  return h(
    'section',
    { class: 'allowlists', 'aria-label': 'Source-address allowlists' },
    h('h3', null, 'Source addresses'),
    h(
      'ul',
      null,
      v.allow_from ? row('Callers only from', v.allow_from.join(', '), 'allow-from') : null,
      v.tunnel_from ? row('Connectors only from', v.tunnel_from.join(', '), 'tunnel-from') : null,
      ...repos.map((f) =>
        row(`${f.label}: callers only from`, (f.allow_from ?? []).join(', '), 'repo-allow-from'),
      ),
    ),
  );
}
