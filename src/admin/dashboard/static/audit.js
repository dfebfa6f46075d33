// @ts-check
import { api } from './api.js';
import { bytes, clock, h, messageOf } from './dom.js';

/** How many of the newest records the panel shows. */
const SHOWN = 50;

/**
 * A tenant's newest connection records (who reached its network, through which door, from
 * where, how much, how it ended), loaded when the panel opens and on "Refresh".
 * @param {string} tenant
 * @returns {HTMLElement}
 */
export function auditPanel(tenant) {
  const body = h('div', { class: 'audit-body' }, h('p', { class: 'muted small' }, 'Loading…'));
  const load = async () => {
    try {
      const r = await api('GET', `/v1/tenants/${encodeURIComponent(tenant)}/audit?limit=${SHOWN}`);
      body.replaceChildren(records(r.records));
    } catch (e) {
      body.replaceChildren(h('p', { class: 'error', role: 'alert' }, messageOf(e)));
    }
  };
  void load();
  return h(
    'section',
    { class: 'audit', 'aria-label': 'Connection records' },
    h(
      'header',
      null,
      h('h4', null, 'Connections'),
      h('span', { class: 'muted small' }, ` newest ${SHOWN}, one per connection`),
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'ghost', onclick: () => void load() }, 'Refresh'),
    ),
    body,
  );
}

/** @param {Array<import('../../audit-routes.js').ConnectionRecordView>} list the admin API's records */
function records(list) {
  if (list.length === 0) return h('p', { class: 'muted small' }, 'No connection records yet.');
  return h(
    'table',
    { class: 'audit-records' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Ended', 'Door', 'Repository', 'Caller', 'Identity', 'In', 'Out', 'Time', 'Outcome'].map((t) =>
          h('th', { scope: 'col', class: 'audit-cell' }, t),
        ),
      ),
    ),
    h(
      'tbody',
      null,
      list.map((r) =>
        h(
          'tr',
          {
            dataset: { outcome: r.outcome },
            class: r.outcome === 'closed' ? undefined : 'audit-bad',
            title: r.connector ? `served by ${r.connector}` : undefined,
          },
          h('td', { class: 'audit-cell mono', title: r.ended_at }, clock(r.ended_at)),
          h('td', { class: 'audit-cell' }, r.front_door.replace('_', ' ')),
          h('td', { class: 'audit-cell mono' }, r.repository),
          h('td', { class: 'audit-cell mono', dataset: { field: 'source' } }, r.source),
          h('td', { class: 'audit-cell' }, r.identity ?? '–'),
          h('td', { class: 'audit-cell num' }, bytes(r.bytes_in)),
          h('td', { class: 'audit-cell num' }, bytes(r.bytes_out)),
          h('td', { class: 'audit-cell num' }, `${(r.duration_ms / 1000).toFixed(1)} s`),
          h('td', { class: 'audit-cell' }, r.reason ? `${r.outcome}: ${r.reason}` : r.outcome),
        ),
      ),
    ),
  );
}
