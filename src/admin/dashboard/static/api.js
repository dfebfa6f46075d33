// @ts-check
/**
 * The admin API, called with the admin token kept in sessionStorage (gone when the tab closes), or
 * with a single sign-on session: an HttpOnly cookie the page never sees, plus the session's CSRF
 * token sent with every change.
 */

const KEY = 'tether.adminToken';

/** The signed-in user of a single sign-on session: { user: { email, name, role }, csrf_token }. */
let sso = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

/** The single sign-on session's user ({ email, name, role, subject }), or null. */
export function ssoUser() {
  return token() ? null : (sso?.user ?? null);
}

/** Whether this page may change things: the admin token, or the admin role. */
export function canChange() {
  return Boolean(token()) || sso?.user?.role === 'admin';
}

/**
 * Asks the gateway who is signed in by single sign-on. Resolves with
 * { available: false } when the gateway has no single sign-on, { available: true, user: null,
 * ended } when nobody is signed in (ended: a session just expired), or { available: true, user }.
 */
export async function loadSession() {
  let json = null;
  try {
    const res = await fetch('/auth/session', { credentials: 'same-origin', cache: 'no-store' });
    json = res.ok ? await res.json() : null;
  } catch {
    throw new ApiError(0, 'UNREACHABLE', 'cannot reach the gateway');
  }
  if (!json?.sso) return { available: false };
  sso = json.signed_in ? json : null;
  return { available: true, user: sso?.user ?? null, ended: json.ended === true };
}

/** Ends the single sign-on session (the cookie goes with it). */
export async function ssoSignOut() {
  const csrf = sso?.csrf_token ?? '';
  sso = null;
  await fetch('/auth/logout', {
    method: 'POST',
    headers: { 'x-csrf-token': csrf },
    credentials: 'same-origin',
  }).catch(() => {});
}

/** Calls the JSON API; throws ApiError with the gateway's own message. */
export async function api(method, path, body, tok = token()) {
  let res;
  const bySession = !tok && sso !== null;
  try {
    res = await fetch(path, {
      method,
      headers: {
        ...(bySession
          ? method === 'GET' || method === 'HEAD'
            ? {}
            : { 'x-csrf-token': sso.csrf_token }
          : { authorization: `Bearer ${tok ?? ''}` }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError(0, 'UNREACHABLE', 'cannot reach the gateway');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  if (!res.ok) {
    const e = json?.error;
    if (bySession && res.status === 401) {
      // The session expired or was signed out elsewhere: back to the sign-in page.
      sso = null;
      window.dispatchEvent(new CustomEvent('tether-session-ended'));
    }
    throw new ApiError(
      res.status,
      e?.code ?? `HTTP_${res.status}`,
      e?.message ?? `the gateway answered ${res.status}`,
    );
  }
  return json;
}

/**
 * Opens the live event stream. Signing in for events sets a cookie that only /v1/events accepts
 * (EventSource cannot send the token). `on` maps event names to handlers; `onState` gets
 * "live" | "reconnecting" | "signed-out".
 */
export function openEvents(on, onState) {
  let es;
  let stopped = false;
  let retry;
  const connect = async () => {
    if (stopped) return;
    try {
      if (token()) await api('POST', '/v1/events/session');
      else {
        const s = await loadSession();
        if (s.ended) return window.dispatchEvent(new CustomEvent('tether-session-ended'));
        if (!s.user) return onState('signed-out');
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return onState('signed-out');
      onState('reconnecting');
      retry = setTimeout(connect, 2000);
      return;
    }
    es = new EventSource('/v1/events');
    es.addEventListener('open', () => onState('live'));
    for (const [name, fn] of Object.entries(on)) {
      es.addEventListener(name, (m) => fn(JSON.parse(m.data)));
    }
    es.addEventListener('error', () => {
      if (stopped) return;
      onState('reconnecting');
      // CLOSED means the gateway refused the stream (restarted: cookie unknown): sign in again.
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        retry = setTimeout(connect, 1000);
      }
    });
  };
  connect();
  return () => {
    stopped = true;
    clearTimeout(retry);
    es?.close();
  };
}
