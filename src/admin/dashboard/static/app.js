// @ts-check
import './activity.js';
import './add-tenant.js';
import './tenant.js';
import {
  ApiError,
  api,
  canChange,
  loadSession,
  openEvents,
  setToken,
  ssoSignOut,
  ssoUser,
  token,
} from './api.js';
import { h, messageOf, rate } from './dom.js';

/** @typedef {import('../../schemas.js').TenantView} TenantView (the admin API's shape of a tenant) */

/**
 * Root: the sign-in page, or the dashboard once a working admin token or a single sign-on
 * session is known.
 */
class TetherApp extends HTMLElement {
  connectedCallback() {
    this.addEventListener('signed-in', () => this.render());
    this.addEventListener('signed-out', () => {
      setToken(null);
      this.render();
    });
    window.addEventListener('tether-session-ended', () =>
      this.render('Your session has ended. Sign in again.'),
    );
    this.render();
  }

  async render(notice) {
    if (token()) {
      this.replaceChildren(h('tether-dashboard'));
      return;
    }
    let s = { available: false };
    try {
      s = await loadSession();
    } catch {
      // unreachable: the sign-in page says so when it is used
    }
    if (s.user) {
      this.replaceChildren(h('tether-dashboard'));
      return;
    }
    const signin = h('tether-signin');
    signin.sso = s.available;
    signin.notice = s.ended ? 'Your session has ended. Sign in again.' : notice;
    this.replaceChildren(signin);
  }
}

class TetherSignin extends HTMLElement {
  constructor() {
    super();
    /** Whether the gateway offers single sign-on. */
    this.sso = false;
    /** @type {string | undefined} A line above the form (e.g. the session has ended). */
    this.notice = undefined;
  }

  connectedCallback() {
    const input = h('input', {
      id: 'admin-token',
      name: 'token',
      type: 'password',
      autocomplete: 'current-password',
      required: true,
      spellcheck: 'false',
    });
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    const button = h('button', { type: 'submit', class: this.sso ? '' : 'primary' }, 'Sign in');
    const sso = this.sso
      ? [
          h('a', { class: 'button primary', href: '/auth/login' }, 'Sign in with single sign-on'),
          h(
            'p',
            { class: 'muted small' },
            'Or use the admin token (the file admin.token in the data directory):',
          ),
        ]
      : [
          h(
            'p',
            { class: 'muted' },
            'Sign in with the admin token (the file admin.token in the data directory).',
          ),
        ];
    const form = h(
      'form',
      { class: 'signin card', onsubmit: (e) => this.submit(e, input, error, button) },
      h('h1', null, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'Tether gateway'),
      this.notice ? h('p', { class: 'notice', role: 'status' }, this.notice) : null,
      sso,
      h('label', { for: 'admin-token' }, 'Admin token'),
      input,
      error,
      button,
    );
    this.replaceChildren(h('main', { class: 'signin-page' }, form));
    if (!this.sso) input.focus();
  }

  async submit(e, input, error, button) {
    e.preventDefault();
    const t = input.value.trim();
    error.hidden = true;
    button.disabled = true;
    try {
      await api('GET', '/v1/tenants', undefined, t);
      setToken(t);
      this.dispatchEvent(new CustomEvent('signed-in', { bubbles: true }));
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 401
          ? 'That token is not valid for this gateway.'
          : `Could not sign in: ${messageOf(err)}`;
      error.hidden = false;
      input.select();
    } finally {
      button.disabled = false;
    }
  }
}

/** The signed-in view: totals, add a tenant, one card per tenant, the activity feed. */
class TetherDashboard extends HTMLElement {
  constructor() {
    super();
    this.tenants = new Map();
    this.stats = null;
    this.refreshTimers = new Map();
  }

  connectedCallback() {
    this.status = h('span', { class: 'status', dataset: { state: 'connecting' } }, 'connecting…');
    this.version = h('span', { class: 'muted' });
    this.summary = h('section', { class: 'summary', 'aria-label': 'Totals' });
    this.list = h('section', { class: 'tenants', 'aria-label': 'Tenants' });
    this.empty = h(
      'p',
      { class: 'empty muted' },
      canChange() ? 'No tenants yet. Add one above.' : 'No tenants yet.',
    );
    this.activity = h('tether-activity');
    this.replaceChildren(
      h(
        'header',
        { class: 'topbar' },
        h('h1', null, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'Tether gateway'),
        this.version,
        h('span', { class: 'spacer' }),
        this.status,
        this.whoAmI(),
        h('button', { type: 'button', class: 'ghost', onclick: () => this.signOut() }, 'Sign out'),
      ),
      h(
        'main',
        { class: 'layout' },
        h(
          'div',
          { class: 'main-column' },
          this.summary,
          canChange() ? h('tether-add-tenant', { onadded: (e) => this.upsert(e.detail.tenant) }) : null,
          h('h2', null, 'Tenants'),
          this.empty,
          this.list,
        ),
        h('aside', { class: 'side-column' }, h('h2', null, 'Activity'), this.activity),
      ),
    );
    this.addEventListener('removed', (e) => this.remove(/** @type {CustomEvent} */ (e).detail.id));
    api('GET', '/health')
      .then((hl) => {
        this.version.textContent = `version ${hl.version}${hl.node ? ` · node ${hl.node}` : ''}`;
      })
      .catch(() => {});
    this.stop = openEvents(
      {
        snapshot: (m) => {
          this.tenants.clear();
          this.list.replaceChildren();
          for (const t of m.tenants) this.upsert(t);
          this.activity.reset(m.activity);
          this.applyStats(m.stats);
        },
        tenant: (m) => this.upsert(m.tenant),
        'tenant-removed': (m) => this.remove(m.id),
        activity: (m) => {
          this.activity.add(m);
          // Connections closing, a quota running out: the tenant's usage and connectors changed.
          if (typeof m.tenant === 'string') this.refreshSoon(m.tenant, 300);
        },
        stats: (m) => this.applyStats(m),
      },
      (state) => {
        if (state === 'signed-out') return this.signOut();
        this.status.dataset.state = state;
        this.status.textContent = state === 'live' ? 'live' : 'reconnecting…';
      },
    );
    this.renderSummary();
  }

  disconnectedCallback() {
    this.stop?.();
    for (const t of this.refreshTimers.values()) clearTimeout(t);
    this.refreshTimers.clear();
  }

  /**
   * Fetches a tenant's view again shortly: the event stream sends a new view when sessions,
   * forwards or settings change, not when bytes move, so usage and per-connector counts are
   * fetched after activity (and every few seconds while traffic flows).
   */
  refreshSoon(id, delay) {
    if (this.refreshTimers.has(id) || !this.tenants.has(id)) return;
    const timer = setTimeout(async () => {
      this.refreshTimers.delete(id);
      try {
        /** @type {{ tenant: TenantView }} */
        const r = await api('GET', `/v1/tenants/${encodeURIComponent(id)}`);
        if (this.tenants.has(id)) this.upsert(r.tenant);
      } catch {
        // removed meanwhile, or the gateway is restarting: the event stream tells
      }
    }, delay);
    this.refreshTimers.set(id, timer);
  }

  /** The single sign-on user and role (nothing with the admin token). */
  whoAmI() {
    const u = ssoUser();
    if (!u) return null;
    return h(
      'span',
      { class: 'who', dataset: { role: u.role } },
      h('span', { class: 'mono' }, u.email ?? u.name ?? u.subject),
      ' ',
      h(
        'span',
        { class: `badge${u.role === 'admin' ? '' : ' warn'}`, dataset: { field: 'role' } },
        u.role === 'admin' ? 'admin' : 'viewer (read only)',
      ),
    );
  }

  async signOut() {
    this.stop?.();
    if (token()) await api('DELETE', '/v1/events/session').catch(() => {});
    else await ssoSignOut();
    this.dispatchEvent(new CustomEvent('signed-out', { bubbles: true }));
  }

  /** @param {TenantView} view */
  upsert(view) {
    let card = this.tenants.get(view.id);
    if (!card) {
      card = h('tether-tenant');
      this.tenants.set(view.id, card);
      const next = [...this.tenants.keys()].sort().find((id) => id > view.id);
      this.list.insertBefore(card, next ? this.tenants.get(next) : null);
    }
    card.view = view;
    if (this.stats) card.applyStats(this.stats);
    this.renderSummary();
  }

  remove(id) {
    this.tenants.get(id)?.remove();
    this.tenants.delete(id);
    this.renderSummary();
  }

  applyStats(stats) {
    this.stats = stats;
    for (const [id, t] of Object.entries(stats?.tenants ?? {})) {
      if (t.in_rate + t.out_rate > 0) this.refreshSoon(id, 3000);
    }
    for (const card of this.tenants.values()) card.applyStats(stats);
    this.renderSummary();
  }

  renderSummary() {
    const views = [...this.tenants.values()].map((c) => c.view).filter(Boolean);
    const t = Object.values(this.stats?.tenants ?? {});
    const sum = (f) => t.reduce((n, s) => n + (s[f] ?? 0), 0);
    const tile = (label, value, name) =>
      h(
        'div',
        { class: 'tile', dataset: { tile: name } },
        h('span', { class: 'tile-value' }, value),
        h('span', null, label),
      );
    this.empty.hidden = views.length > 0;
    this.summary.replaceChildren(
      tile('tenants', views.length, 'tenants'),
      tile(
        'sessions',
        views.reduce((n, v) => n + v.sessions.length, 0),
        'sessions',
      ),
      tile(
        'forwards online',
        views.reduce((n, v) => n + v.forwards.filter((f) => f.state === 'online').length, 0),
        'forwards',
      ),
      tile('connections', sum('connections'), 'connections'),
      tile('toward connectors', rate(sum('in_rate')), 'in'),
      tile('back to callers', rate(sum('out_rate')), 'out'),
    );
  }
}

customElements.define('tether-app', TetherApp);
customElements.define('tether-signin', TetherSignin);
customElements.define('tether-dashboard', TetherDashboard);
