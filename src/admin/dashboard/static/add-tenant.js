// @ts-check
import { api } from './api.js';
import { h, messageOf } from './dom.js';

/** Adds a tenant; its private key is shown once, with a copy button. Fires "added". */
class TetherAddTenant extends HTMLElement {
  connectedCallback() {
    this.idInput = h('input', {
      id: 'new-tenant-id',
      name: 'id',
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'acme',
      required: true,
    });
    this.quotaInput = h('input', {
      id: 'new-tenant-quota',
      name: 'quota',
      inputmode: 'numeric',
      placeholder: 'default',
      class: 'narrow',
    });
    this.error = h('p', { class: 'error', role: 'alert', hidden: true });
    this.result = h('div', { class: 'key-panel', hidden: true });
    this.replaceChildren(
      h(
        'form',
        { class: 'card add-tenant', onsubmit: (e) => this.submit(e) },
        h('h2', null, 'Add a tenant'),
        h(
          'div',
          { class: 'row' },
          h('label', { for: 'new-tenant-id' }, 'Tenant id'),
          this.idInput,
          h('label', { for: 'new-tenant-quota' }, 'Quota'),
          this.quotaInput,
          h('button', { type: 'submit', class: 'primary' }, 'Add tenant'),
        ),
        this.error,
        this.result,
      ),
    );
  }

  async submit(e) {
    e.preventDefault();
    this.error.hidden = true;
    const body = { id: this.idInput.value.trim() };
    const q = this.quotaInput.value.trim();
    if (q !== '') body.quota = /^-?\d+$/.test(q) ? Number(q) : q;
    try {
      const r = await api('POST', '/v1/tenants', body);
      this.showKey(r);
      this.idInput.value = '';
      this.quotaInput.value = '';
      this.dispatchEvent(new CustomEvent('added', { detail: r }));
    } catch (err) {
      this.error.textContent = messageOf(err);
      this.error.hidden = false;
    }
  }

  showKey(r) {
    const key = h('pre', { class: 'private-key', tabindex: '0' }, r.private_key ?? '');
    const copied = h('span', { class: 'muted copied', role: 'status' });
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(r.private_key);
      } catch {
        const range = document.createRange();
        range.selectNodeContents(key);
        getSelection()?.removeAllRanges();
        getSelection()?.addRange(range);
        document.execCommand('copy');
      }
      copied.textContent = 'Copied.';
    };
    this.result.replaceChildren(
      h(
        'p',
        null,
        h('strong', null, `Tenant ${r.tenant.id} added.`),
        ` Key fingerprint ${r.fingerprint}. Its private key is shown only this once: hand it to the connector's operator now.`,
      ),
      key,
      h(
        'div',
        { class: 'row' },
        h('button', { type: 'button', class: 'primary', onclick: copy }, 'Copy private key'),
        h(
          'button',
          {
            type: 'button',
            class: 'ghost',
            onclick: () => {
              this.result.replaceChildren();
              this.result.hidden = true;
            },
          },
          'Done',
        ),
        copied,
      ),
    );
    this.result.hidden = false;
  }
}

customElements.define('tether-add-tenant', TetherAddTenant);
