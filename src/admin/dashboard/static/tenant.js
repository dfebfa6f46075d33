// @ts-check
import { allowlistPanel } from './allowlists.js';
import { api, canChange } from './api.js';
import { auditPanel } from './audit.js';
import { ago, bytes, clock, h, messageOf, rate } from './dom.js';
import { limitsForm, limitsPanel } from './limits.js';
import { managedPanel } from './managed.js';

/** @typedef {import('../../schemas.js').TenantView} TenantView (the admin API's shape of a tenant) */

/**
 * One tenant: quota and usage, traffic limits, live sessions, forwards and their connectors;
 * change the quota or the limits, or remove it. The header and the open forms stay put when a
 * new view arrives (someone typing keeps their text and focus); the rest is drawn again.
 */
class TetherTenant extends HTMLElement {
  /** @type {TenantView} set before the element is connected (the app sets it first) */
  _view = /** @type {any} */ (undefined);

  /** @param {TenantView} v */
  set view(v) {
    this._view = v;
    this.dataset.tenant = v.id;
    this.render();
  }

  get view() {
    return this._view;
  }

  /** The parts that stay: title, badges, buttons and the two forms. */
  skeleton() {
    this.heading = h('h3');
    this.badges = h('span', { class: 'badges' });
    this.rateCell = h('span', { class: 'rate', title: 'Throughput of this tenant’s tunnel sessions' });
    this.form = h('div', { class: 'quota-form', hidden: true });
    this.limitsEdit = h('div', { class: 'limits-form', hidden: true });
    this.body = h('div', { class: 'tenant-body' });
    this.auditBox = h('div', { class: 'audit-box', hidden: true });
    this.managed = managedPanel(this._view.id);
    this.article = h(
      'article',
      { class: 'card tenant' },
      h(
        'header',
        null,
        this.heading,
        this.badges,
        this.rateCell,
        h('span', { class: 'spacer' }),
        // A viewer (single sign-on, read only) gets no change buttons: the gateway would refuse them.
        canChange()
          ? h('button', { type: 'button', class: 'ghost', onclick: () => this.editQuota() }, 'Change quota')
          : null,
        h('button', { type: 'button', class: 'ghost', onclick: () => this.toggleAudit() }, 'Connections'),
        canChange()
          ? [
              h(
                'button',
                { type: 'button', class: 'ghost', onclick: () => this.editLimits() },
                'Change limits',
              ),
              h('button', { type: 'button', class: 'danger', onclick: () => this.confirmRemove() }, 'Remove'),
            ]
          : null,
      ),
      this.form,
      this.limitsEdit,
      this.body,
      this.auditBox,
      this.managed,
    );
    this.replaceChildren(this.article);
  }

  render() {
    const v = this._view;
    if (!this.article) this.skeleton();
    this.article.setAttribute('aria-label', `Tenant ${v.id}`);
    this.heading.textContent = v.id;
    const spent = v.usage?.exhausted === true;
    const repoSpent = v.forwards.some((f) => f.limits && f.usage?.exhausted);
    this.dataset.exhausted = spent ? 'tenant' : repoSpent ? 'repository' : '';
    const badges = [
      v.quota === 0
        ? h('span', { class: 'badge off' }, 'disabled (quota 0)')
        : h('span', { class: 'badge', dataset: { field: 'usage' } }, `${v.in_use} / ${v.quota} forwards`),
      spent
        ? h('span', { class: 'badge off', dataset: { field: 'exhausted' } }, 'traffic quota exhausted')
        : repoSpent
          ? h(
              'span',
              { class: 'badge warn', dataset: { field: 'exhausted' } },
              'a repository’s traffic quota is exhausted',
            )
          : null,
    ];
    this.badges.replaceChildren(...badges.filter(Boolean));
    this.body.replaceChildren(
      ...[
        this.notice ? h('p', { class: 'muted small', role: 'status' }, this.notice) : null,
        limitsPanel(v),
        allowlistPanel(v),
        this.sessions(v),
        this.forwards(v),
      ].filter(Boolean),
    );
    if (this.lastStats) this.applyStats(this.lastStats);
  }

  /** Shows (and loads) or hides the tenant's newest connection records. */
  toggleAudit() {
    const open = this.auditBox.hidden;
    this.auditBox.hidden = !open;
    this.auditBox.replaceChildren(...(open ? [auditPanel(this._view.id)] : []));
  }

  /** @param {TenantView} v */
  sessions(v) {
    if (v.sessions.length === 0) return h('p', { class: 'muted small' }, 'No live session.');
    return h(
      'ul',
      { class: 'sessions', 'aria-label': 'Sessions' },
      v.sessions.map((s) =>
        h(
          'li',
          null,
          h('span', { class: 'dot online', 'aria-hidden': 'true' }),
          h('span', { class: 'mono' }, s.source),
          h(
            'span',
            { class: 'muted', title: `${s.fingerprint}, connected ${ago(s.since)}` },
            ` ${s.agent} · key ${s.fingerprint.slice(0, 19)}… · connected ${clock(s.since)}`,
          ),
        ),
      ),
    );
  }

  /** @param {TenantView} v */
  forwards(v) {
    if (v.forwards.length === 0)
      return h('p', { class: 'muted small' }, 'No forwards yet: start a connector with this tenant’s key.');
    return h(
      'table',
      { class: 'forwards' },
      h(
        'thead',
        null,
        h(
          'tr',
          null,
          ['Repository', 'Lease port', 'State', 'Destination', 'Connections', 'To connector', 'Back'].map(
            (t) => h('th', { scope: 'col' }, t),
          ),
        ),
      ),
      h(
        'tbody',
        null,
        v.forwards.map((f) => [
          h(
            'tr',
            { dataset: { forward: f.label, state: f.state } },
            h('td', { class: 'mono' }, f.label),
            h('td', { class: 'mono', dataset: { field: 'port' } }, String(f.port)),
            h(
              'td',
              null,
              h('span', { class: `state ${f.state}` }, f.state),
              f.limits && f.usage?.exhausted
                ? h('span', { class: 'state spent', title: 'its traffic quota is exhausted' }, 'quota spent')
                : null,
            ),
            h(
              'td',
              { class: 'mono' },
              f.destination
                ? `${f.service ? `${f.service}${f.scheme ? `+${f.scheme}` : ''}://` : ''}${f.destination}${f.path ?? ''}`
                : h('span', { class: 'muted' }, 'not told (plain SSH)'),
            ),
            h('td', { class: 'num', dataset: { field: 'connections' } }, String(f.connections)),
            h('td', { class: 'num', dataset: { field: 'bytes_in' } }, '–'),
            h('td', { class: 'num', dataset: { field: 'bytes_out' } }, '–'),
          ),
          this.connectors(f),
        ]),
      ),
    );
  }

  /** A line under a forward: each connector serving it (source, since, connections, state). */
  connectors(f) {
    const eps = f.endpoints ?? [];
    const remote = Math.max(0, (f.connectors ?? eps.length) - eps.length);
    if (eps.length === 0 && remote === 0) return null;
    const n = eps.length + remote;
    return h(
      'tr',
      { class: 'connectors-row', dataset: { connectorsOf: f.label } },
      h(
        'td',
        { colspan: '7' },
        h(
          'ul',
          { class: 'connectors', 'aria-label': `Connectors of ${f.label}` },
          h('li', { class: 'muted caption' }, `${n} connector${n === 1 ? '' : 's'}`),
          eps.map((e) =>
            h(
              'li',
              { dataset: { connector: e.source, state: e.state } },
              h('span', { class: `dot ${e.state}`, 'aria-hidden': 'true' }),
              h('span', { class: 'mono', dataset: { field: 'source' } }, e.source),
              e.destination
                ? h(
                    'span',
                    { class: 'mono muted', dataset: { field: 'connector-destination' } },
                    ` → ${e.destination}`,
                  )
                : null,
              h(
                'span',
                { class: 'muted', title: `${e.agent}, connected ${ago(e.since)}` },
                ` since ${clock(e.since)} · `,
              ),
              h(
                'span',
                { dataset: { field: 'connector-connections' } },
                `${e.connections} connection${e.connections === 1 ? '' : 's'}`,
              ),
              e.state === 'withdrawn'
                ? [
                    ' ',
                    h('span', { class: 'state withdrawn' }, 'withdrawn'),
                    h('span', { class: 'reason', dataset: { field: 'reason' } }, ` ${e.reason ?? ''}`),
                  ]
                : null,
            ),
          ),
          remote > 0
            ? h(
                'li',
                { class: 'muted' },
                `${remote} connected to other cluster members${f.node ? ` (${f.node})` : ''}`,
              )
            : null,
        ),
      ),
    );
  }

  applyStats(stats) {
    this.lastStats = stats;
    const v = this._view;
    if (!v) return;
    const t = stats.tenants[v.id];
    if (this.rateCell) this.rateCell.textContent = t ? `↓ ${rate(t.in_rate)}  ↑ ${rate(t.out_rate)}` : '';
    for (const row of /** @type {NodeListOf<HTMLElement>} */ (this.querySelectorAll('tr[data-forward]'))) {
      const f = stats.forwards[`${v.id} ${row.dataset.forward}`];
      const set = (field, text) => {
        const cell = row.querySelector(`[data-field="${field}"]`);
        if (cell && cell.textContent !== text) cell.textContent = text;
      };
      set('connections', String(f?.connections ?? 0));
      set('bytes_in', f ? bytes(f.bytes_in) : '–');
      set('bytes_out', f ? bytes(f.bytes_out) : '–');
    }
  }

  editQuota() {
    const v = this._view;
    const input = h('input', {
      id: `quota-${v.id}`,
      name: 'quota',
      inputmode: 'numeric',
      class: 'narrow',
      value: String(v.quota),
    });
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    const done = () => {
      this.form.hidden = true;
      this.form.replaceChildren();
    };
    const save = async (e) => {
      e.preventDefault();
      const text = input.value.trim();
      error.hidden = true;
      try {
        const r = await api('PATCH', `/v1/tenants/${encodeURIComponent(v.id)}`, {
          quota: /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text,
        });
        done();
        this.view = r.tenant;
      } catch (err) {
        error.textContent = messageOf(err);
        error.hidden = false;
        input.select();
      }
    };
    this.form.replaceChildren(
      h(
        'form',
        { class: 'row', onsubmit: save },
        h('label', { for: `quota-${v.id}` }, 'Forwards at once (0 disables the tenant)'),
        input,
        h('button', { type: 'submit', class: 'primary' }, 'Save quota'),
        h('button', { type: 'button', class: 'ghost', onclick: done }, 'Cancel'),
      ),
      error,
    );
    this.form.hidden = false;
    input.select();
  }

  editLimits() {
    if (!this._view.limits) return;
    const close = () => {
      this.limitsEdit.hidden = true;
      this.limitsEdit.replaceChildren();
    };
    const { form, focus } = limitsForm(this._view, {
      onSaved: (view, repo) => {
        close();
        // Stored, but shown only once the repository has been forwarded: say so until the next change.
        this.notice =
          repo && !view.forwards.some((f) => f.label === repo)
            ? `Limits of ${repo} saved; they show here once a connector forwards it.`
            : null;
        this.view = view;
      },
      onCancel: close,
    });
    this.limitsEdit.replaceChildren(form);
    this.limitsEdit.hidden = false;
    focus();
  }

  confirmRemove() {
    const v = this._view;
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-label': `Remove tenant ${v.id}` },
      h('h3', null, `Remove tenant ${v.id}?`),
      h(
        'p',
        null,
        'Its live sessions and their connections end at once, its keys stop working and its lease ports are freed. This cannot be undone.',
      ),
      error,
      h(
        'form',
        { method: 'dialog', class: 'row end' },
        h('button', { value: 'cancel', class: 'ghost' }, 'Cancel'),
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            onclick: async () => {
              try {
                await api('DELETE', `/v1/tenants/${encodeURIComponent(v.id)}`);
                dialog.close();
                this.dispatchEvent(new CustomEvent('removed', { bubbles: true, detail: { id: v.id } }));
              } catch (err) {
                error.textContent = messageOf(err);
                error.hidden = false;
              }
            },
          },
          `Remove ${v.id}`,
        ),
      ),
    );
    dialog.addEventListener('close', () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
  }
}

customElements.define('tether-tenant', TetherTenant);
