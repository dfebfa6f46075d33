import { api } from './api.js';
import { ago, bytes, clock, h, rate } from './dom.js';

/** One tenant: quota and usage, live sessions, forwards; change the quota or remove it. */
class TetherTenant extends HTMLElement {
  set view(v) {
    this._view = v;
    this.dataset.tenant = v.id;
    // Do not pull the quota form away from someone typing in it: render when they are done.
    if (this.editing) this.stale = true;
    else this.render();
  }

  get view() {
    return this._view;
  }

  render() {
    const v = this._view;
    this.stale = false;
    this.form = h('div', { class: 'quota-form', hidden: true });
    this.rateCell = h('span', { class: 'rate', title: 'Throughput of this tenant’s tunnel sessions' });
    const usage =
      v.quota === 0
        ? h('span', { class: 'badge off' }, 'disabled (quota 0)')
        : h('span', { class: 'badge', dataset: { field: 'usage' } }, `${v.in_use} / ${v.quota} forwards`);
    this.replaceChildren(
      h(
        'article',
        { class: 'card tenant', 'aria-label': `Tenant ${v.id}` },
        h(
          'header',
          null,
          h('h3', null, v.id),
          usage,
          this.rateCell,
          h('span', { class: 'spacer' }),
          h('button', { type: 'button', class: 'ghost', onclick: () => this.editQuota() }, 'Change quota'),
          h('button', { type: 'button', class: 'danger', onclick: () => this.confirmRemove() }, 'Remove'),
        ),
        this.form,
        this.sessions(v),
        this.forwards(v),
      ),
    );
    if (this.lastStats) this.applyStats(this.lastStats);
  }

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
        v.forwards.map((f) =>
          h(
            'tr',
            { dataset: { forward: f.label, state: f.state } },
            h('td', { class: 'mono' }, f.label),
            h('td', { class: 'mono', dataset: { field: 'port' } }, String(f.port)),
            h('td', null, h('span', { class: `state ${f.state}` }, f.state)),
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
    for (const row of this.querySelectorAll('tr[data-forward]')) {
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
    this.editing = true;
    const input = h('input', {
      id: `quota-${v.id}`,
      name: 'quota',
      inputmode: 'numeric',
      class: 'narrow',
      value: String(v.quota),
    });
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    const done = () => {
      this.editing = false;
      this.form.hidden = true;
      if (this.stale) this.render();
    };
    const save = async (e) => {
      e.preventDefault();
      const text = input.value.trim();
      error.hidden = true;
      try {
        const r = await api('PATCH', `/v1/tenants/${encodeURIComponent(v.id)}`, {
          quota: /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text,
        });
        this.editing = false;
        this.view = r.tenant;
      } catch (err) {
        error.textContent = err.message;
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
                error.textContent = err.message;
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
