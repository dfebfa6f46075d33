// @ts-check
import { api } from './api.js';
import { h, messageOf } from './dom.js';
import { formatBytes, formatPeriod, formatRate } from './units.js';

/** @typedef {import('../../schemas.js').TenantView} TenantView (the admin API's shape of a tenant) */

/**
 * Traffic limits of a tenant and its repositories: what they are, how much of the traffic quota
 * is used, and a form to change them. Values are written as on the command line ("10MB/s",
 * "500GB/month", "none"); the gateway parses them and its message is shown when it refuses one.
 */

/** A quota as the form shows it (and the gateway reads it back): "1 kB/month", "10 GB/30d". */
function trafficText(l) {
  return l.traffic_limit === null ? '' : `${formatBytes(l.traffic_limit)}/${l.traffic_period ?? 'month'}`;
}

const rateText = (n) => (n === null ? '' : `${formatRate(n)}`);

/** "↑ 10 MB/s  ↓ 10 MB/s", "10 MB/s each way", or null when neither way is capped. */
function bandwidth(l) {
  if (l.bandwidth_up === null && l.bandwidth_down === null) return null;
  if (l.bandwidth_up === l.bandwidth_down) return `${formatRate(l.bandwidth_up)} each way`;
  const way = (n) => (n === null ? 'no cap' : `${formatRate(n)}`);
  return `up ${way(l.bandwidth_up)} · down ${way(l.bandwidth_down)}`;
}

/** When the counting starts again: "resets 2026-12-01", or the rolling window. */
function resets(u) {
  if (!u) return '';
  return u.resets_at ? `resets ${u.resets_at}` : `rolling, counted since ${u.period_start}`;
}

function meter(used, limit, exhausted) {
  const fill = h('span', { class: 'meter-fill' });
  // Through the CSSOM: the page's CSP allows no inline style attributes.
  fill.style.width = `${Math.min(100, Math.round((used / limit) * 100))}%`;
  return h(
    'span',
    {
      class: `meter${exhausted ? ' spent' : ''}`,
      role: 'meter',
      'aria-valuemin': '0',
      'aria-valuemax': String(limit),
      'aria-valuenow': String(Math.min(used, limit)),
      'aria-label': 'Traffic quota used',
    },
    fill,
  );
}

/** The traffic line: "2.1 kB of 1 kB per month" + meter, or "4.5 MB this month, no quota". */
function traffic(l, u) {
  const used = u ? formatBytes(u.bytes) : '0 B';
  if (l.traffic_limit === null) {
    return h(
      'span',
      null,
      `${used} ${u && u.period !== 'month' ? `in ${formatPeriod(u.period).slice(4)}` : 'this month'}`,
      h('span', { class: 'muted' }, ' · no quota'),
    );
  }
  const spent = u?.exhausted === true;
  return h(
    'span',
    { class: 'traffic-line' },
    h('span', null, `${used} of ${formatBytes(l.traffic_limit)} ${formatPeriod(l.traffic_period)}`),
    ' ',
    meter(u?.bytes ?? 0, l.traffic_limit, spent),
    ' ',
    h('span', { class: 'muted' }, resets(u)),
  );
}

function item(name, field, ...value) {
  return h(
    'div',
    { class: 'limit', dataset: { limit: field } },
    h('dt', null, name),
    h('dd', null, ...value),
  );
}

/** Short text of a repository's own limits: "1 MB/s each way · at most 5 connections · …". */
export function repoLimitsText(l, u) {
  const parts = [];
  const bw = bandwidth(l);
  if (bw) parts.push(`bandwidth ${bw}`);
  if (l.max_connections !== null) parts.push(`at most ${l.max_connections} connections`);
  if (l.traffic_limit !== null) {
    parts.push(
      `traffic ${u ? formatBytes(u.bytes) : '0 B'} of ${formatBytes(l.traffic_limit)} ${formatPeriod(l.traffic_period)}${u?.exhausted ? ' (exhausted)' : ''}`,
    );
  }
  return parts.length > 0 ? parts.join(' · ') : 'no limits of its own';
}

/**
 * The limits panel of a tenant card; null when the gateway reports no limits.
 * @param {TenantView} v
 */
export function limitsPanel(v) {
  const l = v.limits;
  if (!l) return null;
  const u = v.usage;
  const open = v.connections ?? 0;
  const repos = v.forwards.filter((f) => f.limits);
  const repoSpent = v.forwards.filter((f) => f.limits && f.usage?.exhausted);
  const alerts = [];
  if (u?.exhausted) {
    alerts.push(
      h(
        'p',
        { class: 'exhausted-note', role: 'status', dataset: { field: 'traffic-exhausted' } },
        h('strong', null, 'Traffic quota exhausted.'),
        ` ${formatBytes(u.bytes)} used of ${formatBytes(l.traffic_limit ?? 0)} ${formatPeriod(l.traffic_period)}: new connections are refused${u.resets_at ? ` until ${u.resets_at}` : ' until the rolling window frees room'}.`,
      ),
    );
  }
  for (const f of repoSpent) {
    alerts.push(
      h(
        'p',
        {
          class: 'exhausted-note',
          role: 'status',
          dataset: { field: 'repo-traffic-exhausted', repo: f.label },
        },
        h('strong', null, `Traffic quota of ${f.label} exhausted.`),
        ` New connections to it are refused${f.usage?.resets_at ? ` until ${f.usage.resets_at}` : ''}.`,
      ),
    );
  }
  const panel = h(
    'section',
    { class: 'limits', 'aria-label': `Limits of ${v.id}` },
    alerts,
    h(
      'dl',
      { class: 'limit-grid' },
      item('Bandwidth', 'bandwidth', bandwidth(l) ?? h('span', { class: 'muted' }, 'no cap')),
      item(
        'Connections',
        'connections',
        l.max_connections === null
          ? h('span', null, `${open} open`, h('span', { class: 'muted' }, ' · no cap'))
          : `${open} open of at most ${l.max_connections}`,
      ),
      item('Traffic', 'traffic', traffic(l, u)),
      item('Balance', 'balance', l.balance),
    ),
    repos.length > 0
      ? h(
          'ul',
          { class: 'repo-limits', 'aria-label': 'Repository limits' },
          h('li', { class: 'muted caption' }, 'Repository limits'),
          repos.map((f) =>
            h(
              'li',
              {
                dataset: f.usage?.exhausted
                  ? { repoLimits: f.label, exhausted: 'yes' }
                  : { repoLimits: f.label },
              },
              h('span', { class: 'mono' }, f.label),
              ' ',
              h('span', null, repoLimitsText(f.limits, f.usage)),
            ),
          ),
        )
      : null,
  );
  return panel;
}

/** The tenant's or a repository's current limits (null fields = none). */
function limitsOf(v, repo) {
  if (!repo) return v.limits;
  const f = v.forwards.find((x) => x.label === repo);
  return (
    f?.limits ?? {
      bandwidth_up: null,
      bandwidth_down: null,
      max_connections: null,
      traffic_limit: null,
      traffic_period: null,
    }
  );
}

/**
 * The form to change limits of the tenant or one repository. Only fields the user changed are
 * sent; an empty field sends null (no limit). Calls onSaved(tenantView) or shows the gateway's
 * message and changes nothing.
 * @param {TenantView} v
 */
export function limitsForm(v, { onSaved, onCancel }) {
  const id = (name) => `${name}-${v.id}`;
  const OTHER = '\u0000other';
  const scope = h(
    'select',
    { id: id('limits-scope'), name: 'scope' },
    h('option', { value: '' }, 'the whole tenant'),
    v.forwards.map((f) => h('option', { value: f.label }, `repository ${f.label}`)),
    h('option', { value: OTHER }, 'another repository…'),
  );
  const repoInput = h('input', {
    id: id('limits-repo'),
    name: 'repository',
    placeholder: 'group/repo',
    autocomplete: 'off',
    spellcheck: 'false',
    class: 'narrow',
  });
  const repoField = h(
    'span',
    { class: 'field', hidden: true },
    h('label', { for: id('limits-repo') }, 'Repository'),
    repoInput,
  );
  const input = (name, label, placeholder) => {
    const el = h('input', {
      id: id(`limit-${name}`),
      name,
      placeholder,
      autocomplete: 'off',
      spellcheck: 'false',
    });
    return {
      el,
      field: h('span', { class: 'field' }, h('label', { for: id(`limit-${name}`) }, label), el),
    };
  };
  const up = input('bandwidth_up', 'Bandwidth up', 'e.g. 10MB/s');
  const down = input('bandwidth_down', 'Bandwidth down', 'e.g. 10MB/s');
  const maxConn = input('max_connections', 'Max connections', 'e.g. 50');
  const quota = input('traffic', 'Traffic quota', 'e.g. 500GB/month');
  const balance = h(
    'select',
    { id: id('limit-balance'), name: 'balance' },
    h('option', { value: 'round-robin' }, 'round-robin'),
    h('option', { value: 'least-connections' }, 'least-connections'),
  );
  const balanceField = h(
    'span',
    { class: 'field' },
    h('label', { for: id('limit-balance') }, 'Balance'),
    balance,
  );
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const note = h('p', { class: 'muted small', role: 'status' });
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save limits');

  /** What the fields held when the scope was picked: only changed ones are sent. */
  let initial = {};
  const repo = () => (scope.value === OTHER ? repoInput.value.trim() : scope.value);
  const fill = () => {
    const r = scope.value;
    repoField.hidden = r !== OTHER;
    balanceField.hidden = r !== '';
    const l = limitsOf(v, r === OTHER ? '' : r);
    const blank = r === OTHER;
    initial = {
      bandwidth_up: blank ? '' : rateText(l.bandwidth_up),
      bandwidth_down: blank ? '' : rateText(l.bandwidth_down),
      max_connections: blank || l.max_connections === null ? '' : String(l.max_connections),
      traffic: blank ? '' : trafficText(l),
      balance: v.limits?.balance,
    };
    up.el.value = initial.bandwidth_up;
    down.el.value = initial.bandwidth_down;
    maxConn.el.value = initial.max_connections;
    quota.el.value = initial.traffic;
    balance.value = initial.balance;
    error.hidden = true;
    note.textContent = '';
  };
  scope.addEventListener('change', fill);

  const submit = async (e) => {
    e.preventDefault();
    error.hidden = true;
    note.textContent = '';
    const body = {};
    const fields = {
      bandwidth_up: up.el,
      bandwidth_down: down.el,
      max_connections: maxConn.el,
      traffic: quota.el,
    };
    for (const [name, el] of Object.entries(fields)) {
      const text = el.value.trim();
      if (text !== initial[name]) body[name] = text === '' ? null : text;
    }
    const r = repo();
    if (r === '' && balance.value !== initial.balance) body.balance = balance.value;
    if (Object.keys(body).length === 0) {
      note.textContent = 'Nothing changed.';
      return;
    }
    if (scope.value === OTHER && r === '') {
      error.textContent = 'Name the repository as <group>/<repo>.';
      error.hidden = false;
      repoInput.focus();
      return;
    }
    if (r !== '') body.repository = r;
    save.disabled = true;
    try {
      const res = await api('PATCH', `/v1/tenants/${encodeURIComponent(v.id)}`, body);
      onSaved(res.tenant, r);
    } catch (err) {
      error.textContent = messageOf(err);
      error.hidden = false;
    } finally {
      save.disabled = false;
    }
  };

  const form = h(
    'form',
    { class: 'limits-edit', onsubmit: submit, 'aria-label': `Change limits of ${v.id}` },
    h('div', { class: 'row' }, h('label', { for: id('limits-scope') }, 'Limits of'), scope, repoField),
    h('div', { class: 'limit-fields' }, up.field, down.field, maxConn.field, quota.field, balanceField),
    h(
      'p',
      { class: 'muted small hint' },
      'Write rates as 10MB/s, 512KiB/s or 100Mbit/s and quotas as 500GB/month or 10GB/30d. Leave a field empty (or write none) to remove that limit. Bandwidth up is what callers send towards the repositories, down what comes back.',
    ),
    error,
    note,
    h(
      'div',
      { class: 'row' },
      save,
      h('button', { type: 'button', class: 'ghost', onclick: onCancel }, 'Cancel'),
    ),
  );
  fill();
  return { form, focus: () => up.el.focus() };
}
