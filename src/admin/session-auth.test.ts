import assert from 'node:assert/strict';
import type http from 'node:http';
import { describe, test } from 'node:test';
import { FakeClock } from '../../test/helpers/core.js';
import { RefusalLog } from '../core/refusals.js';
import { silentLogger } from '../log/index.js';
import { cookieValue, SessionAuth } from './session-auth.js';
import { SessionStore } from './session-store.js';

function auth(secure = true) {
  const clock = new FakeClock();
  const store = new SessionStore(clock, {
    idleMs: 60_000,
    lifetimeMs: 600_000,
    maxSessions: 10,
    maxPerUser: 5,
  });
  const log = silentLogger();
  return new SessionAuth({
    store,
    secure,
    origin: () => 'https://gw.example.com',
    refusals: new RefusalLog(log, clock),
    log,
  });
}

const req = (headers: Record<string, string>, method = 'POST') =>
  ({ method, headers }) as unknown as http.IncomingMessage;

describe('session cookies and cross-site checks', () => {
  test('Sec-Fetch-Site: only same-origin passes (a sibling port is same-site and gets SameSite cookies)', () => {
    const a = auth();
    assert.equal(a.crossSite(req({ 'sec-fetch-site': 'same-origin' })), null);
    assert.equal(a.crossSite(req({ 'sec-fetch-site': 'same-site' })), 'Sec-Fetch-Site is "same-site"');
    assert.equal(a.crossSite(req({ 'sec-fetch-site': 'cross-site' })), 'Sec-Fetch-Site is "cross-site"');
    assert.equal(a.crossSite(req({ 'sec-fetch-site': 'none' })), 'Sec-Fetch-Site is "none"');
    // Sec-Fetch-Site decides when present, whatever Origin says.
    assert.equal(
      a.crossSite(req({ 'sec-fetch-site': 'cross-site', origin: 'https://gw.example.com' })),
      'Sec-Fetch-Site is "cross-site"',
    );
  });

  test('without Sec-Fetch-Site the Origin must be the dashboard’s (or the Host the browser used)', () => {
    const a = auth();
    assert.equal(a.crossSite(req({ origin: 'https://gw.example.com' })), null);
    assert.equal(a.crossSite(req({ origin: 'http://10.0.0.5:7070', host: '10.0.0.5:7070' })), null);
    assert.equal(
      a.crossSite(req({ origin: 'https://evil.example', host: 'gw.example.com' })),
      'Origin "https://evil.example" is not this dashboard',
    );
    assert.equal(
      a.crossSite(req({ origin: 'null', host: 'gw.example.com' })),
      'Origin "null" is not this dashboard',
    );
    assert.equal(a.crossSite(req({})), 'the request has neither Sec-Fetch-Site nor Origin');
  });

  test('cookie attributes: HttpOnly, SameSite=Strict, Secure with the __Host- prefix unless plain-http loopback', () => {
    assert.equal(
      auth(true).setCookie('abc'),
      '__Host-tether_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure',
    );
    assert.equal(auth(false).setCookie('abc'), 'tether_session=abc; Path=/; HttpOnly; SameSite=Strict');
    assert.match(
      auth(true).clearCookie(),
      /^__Host-tether_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0; Secure$/,
    );
  });

  test('cookie parsing picks the named cookie only', () => {
    assert.equal(cookieValue('a=1; tether_session=xyz; b=2', 'tether_session'), 'xyz');
    assert.equal(cookieValue('xtether_session=1', 'tether_session'), undefined);
    assert.equal(cookieValue(undefined, 'tether_session'), undefined);
  });
});
