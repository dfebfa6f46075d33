// @ts-check
import { bytes, clock, h } from './dom.js';

const KEEP = 50;

/** What happened lately: the gateway's event records (the audit log), newest first. */
class TetherActivity extends HTMLElement {
  list = h('ol', { class: 'activity', 'aria-live': 'polite' });

  connectedCallback() {
    this.replaceChildren(this.list);
  }

  reset(items) {
    this.connectedCallback();
    this.list.replaceChildren();
    for (const i of items) this.add(i);
  }

  add(i) {
    const parts = [];
    if (i.tenant) parts.push(i.tenant);
    if (i.label) parts.push(i.label);
    if (i.port) parts.push(`port ${i.port}`);
    if (i.source) parts.push(i.source);
    if (i.quota !== undefined) parts.push(`quota ${i.quota}`);
    if (i.bytes_in !== undefined) parts.push(`${bytes(i.bytes_in)} in, ${bytes(i.bytes_out ?? 0)} out`);
    if (i.duration_ms !== undefined) parts.push(`${i.duration_ms} ms`);
    if (i.reason) parts.push(i.reason);
    const item = h(
      'li',
      { dataset: { event: i.event, level: i.level } },
      h('time', { datetime: i.time }, clock(i.time)),
      h('span', { class: 'event' }, i.event),
      h('span', { class: 'detail' }, parts.join(' · ')),
    );
    this.list.prepend(item);
    while (this.list.children.length > KEEP) this.list.lastElementChild.remove();
  }
}

customElements.define('tether-activity', TetherActivity);
