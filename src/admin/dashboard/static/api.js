// @ts-check
/** The admin API, called with the admin token kept in sessionStorage (gone when the tab closes). */

const KEY = 'tether.adminToken';

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

/** Calls the JSON API; throws ApiError with the gateway's own message. */
export async function api(method, path, body, tok = token()) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: {
        authorization: `Bearer ${tok ?? ''}`,
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
      await api('POST', '/v1/events/session');
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
