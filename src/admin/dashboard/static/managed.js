// @ts-check
import { api, canChange } from './api.js';
import { ago, h, messageOf } from './dom.js';

/**
 * Managed repositories of a tenant: what the operator proposed to its connectors and what each
 * connector made of it (serving, refused and why, withdrawn, shadowed by a local entry), with a
 * form to propose one and a button to remove one. Connectors answer through the gateway, not
 * through tenant events: the panel asks again every few seconds while it is on the page.
 */
const POLL_MS = 2000;

class TetherManaged extends HTMLElement {
  connectedCallback() {
    if (!this.list) this.skeleton();
    void this.refresh();
    this.timer = setInterval(() => {
      if (document.visibilityState === 'visible') void this.refresh();
    }, POLL_MS);
  }

  disconnectedCallback() {
    clearInterval(this.timer);
  }

  get tenant() {
    return this.dataset.tenant ?? '';
  }

  skeleton() {
    const id = this.tenant;
    this.list = h('div', { class: 'managed-list' });
    this.error = h('p', { class: 'error', role: 'alert', hidden: true });
    this.repoInput = h('input', {
      id: `managed-repo-${id}`,
      name: 'repository',
      placeholder: 'group/repo',
      autocomplete: 'off',
    });
    this.uriInput = h('input', {
      id: `managed-uri-${id}`,
      name: 'uri',
      placeholder: 'smb://10.0.0.5:445',
      autocomplete: 'off',
      class: 'wide',
    });
    const form = h(
      'form',
      {
        class: 'row managed-form',
        'aria-label': `Propose a managed repository to ${id}`,
        onsubmit: (e) => this.add(e),
      },
      h('label', { for: `managed-repo-${id}` }, 'Repository'),
      this.repoInput,
      h('label', { for: `managed-uri-${id}` }, 'URI'),
      this.uriInput,
      h('button', { type: 'submit', class: 'primary' }, 'Propose'),
    );
    this.replaceChildren(
      h(
        'section',
        { class: 'managed', 'aria-label': `Managed repositories of ${id}` },
        h('h4', null, 'Managed repositories'),
        h(
          'p',
          { class: 'muted small' },
          'Proposed here, served only where the connector’s own managed policy (connect.yaml) allows it.',
        ),
        this.list,
        // A viewer (read-only sign-on role) sees what was proposed, not the form to change it.
        canChange() ? form : null,
        this.error,
      ),
    );
  }

  async refresh() {
    try {
      const r = await api('GET', `/v1/tenants/${encodeURIComponent(this.tenant)}/managed-repositories`);
      this.draw(r.repositories);
    } catch (err) {
      this.list.replaceChildren(h('p', { class: 'muted small' }, messageOf(err)));
    }
  }

  draw(repos) {
    const key = JSON.stringify(repos);
    if (key === this.last) return;
    this.last = key;
    if (repos.length === 0) {
      this.list.replaceChildren(h('p', { class: 'muted small' }, 'None proposed.'));
      return;
    }
    const rows = repos.flatMap((r) => {
      const answers = r.connectors.length === 0 ? [null] : r.connectors;
      return answers.map((c, i) =>
        h(
          'tr',
          { dataset: { managed: r.label, state: c ? c.state : 'proposed' } },
          h('td', { class: 'mono' }, i === 0 ? r.label : ''),
          h('td', { class: 'mono' }, i === 0 ? r.uri : ''),
          h(
            'td',
            { class: 'mono', title: c ? `${c.fingerprint}, answered ${ago(c.updated_at)}` : '' },
            c ? (c.hostname ?? c.fingerprint.slice(0, 19)) : '–',
          ),
          h(
            'td',
            { dataset: { field: 'managed-state' } },
            h('span', { class: `state ${c ? c.state : 'pending'}` }, c ? c.state : 'proposed'),
            c?.reason ? h('span', { class: 'reason', dataset: { field: 'reason' } }, ` ${c.reason}`) : null,
          ),
          h(
            'td',
            null,
            i === 0 && canChange()
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'ghost small',
                    'aria-label': `Remove ${r.label}`,
                    onclick: () => this.remove(r.label),
                  },
                  'Remove',
                )
              : null,
          ),
        ),
      );
    });
    this.list.replaceChildren(
      h(
        'table',
        { class: 'forwards managed-table' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['Repository', 'URI', 'Connector', 'State', ''].map((t) => h('th', { scope: 'col' }, t)),
          ),
        ),
        h('tbody', null, rows),
      ),
    );
  }

  async add(e) {
    e.preventDefault();
    this.error.hidden = true;
    try {
      await api('POST', `/v1/tenants/${encodeURIComponent(this.tenant)}/managed-repositories`, {
        repository: this.repoInput.value.trim(),
        uri: this.uriInput.value.trim(),
      });
      this.repoInput.value = '';
      this.uriInput.value = '';
      await this.refresh();
    } catch (err) {
      this.error.textContent = messageOf(err);
      this.error.hidden = false;
    }
  }

  async remove(label) {
    this.error.hidden = true;
    const [group, repo] = label.split('/');
    try {
      await api(
        'DELETE',
        `/v1/tenants/${encodeURIComponent(this.tenant)}/managed-repositories/${encodeURIComponent(group)}/${encodeURIComponent(repo)}`,
      );
      await this.refresh();
    } catch (err) {
      this.error.textContent = messageOf(err);
      this.error.hidden = false;
    }
  }
}

customElements.define('tether-managed', TetherManaged);

/** The panel of one tenant (kept across redraws of the tenant card). */
export function managedPanel(tenant) {
  return h('tether-managed', { dataset: { tenant } });
}
