/**
 * The error catalog: every code Tether shows a user, caller or peer, with the HTTP status the
 * admin API, the front doors and the peer API answer with, the exit code of the CLI, and
 * whether retrying the same thing later can help. `ErrorCode` is the union of its keys, so a
 * code spelled anywhere else (a throw, a control message, an HTTP answer, an authorization
 * decision) that is not listed here fails type-checking; `catalog.test.ts` also scans the
 * sources for codes in string form and checks docs/errors.md.
 */

/** CLI exit codes: 0 ok, 1 failure, 2 usage / bad input, 3 not found, 4 conflict, 5 unavailable, 6 unauthorized. */
export const EXIT = {
  failure: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  unavailable: 5,
  unauthorized: 6,
} as const;

/** The exit code that goes with an HTTP status (the rule the catalog's `exit` column follows). */
export function exitForStatus(status: number): number {
  if (status === 400) return EXIT.usage;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  if (status === 401 || status === 403) return EXIT.unauthorized;
  if (status === 503) return EXIT.unavailable;
  return EXIT.failure;
}

export interface CatalogEntry {
  /** HTTP status (admin API, front doors, peer API); for SSH-only codes the nearest HTTP meaning. */
  readonly status: number;
  /** `tether` exit code. */
  readonly exit: number;
  /** Whether the same request can succeed later without a change on the caller's side. */
  readonly retryable: boolean;
  /** Where the code comes from and what it means. */
  readonly area: Area;
  readonly description: string;
  /** A second status the same code answers with in one situation (named in the description). */
  readonly alsoStatus?: readonly number[];
}

export type Area =
  | 'admin'
  | 'config'
  | 'cli'
  | 'connector'
  | 'control'
  | 'forward'
  | 'access-proxy'
  | 'http-proxy'
  | 'ssh-proxy'
  | 'peer';

const e = (
  status: number,
  retryable: boolean,
  area: Area,
  description: string,
  alsoStatus?: readonly number[],
): CatalogEntry => ({
  status,
  exit: exitForStatus(status),
  retryable,
  area,
  description,
  ...(alsoStatus ? { alsoStatus } : {}),
});

export const CATALOG = {
  // admin API, tenants, leases
  BAD_REQUEST: e(
    400,
    false,
    'admin',
    'the request (body, query, command) is malformed or has invalid fields',
  ),
  BODY_TOO_LARGE: e(413, false, 'admin', 'the admin API request body is over its size limit'),
  ENROLLMENT_INVALID: e(403, false, 'admin', 'the enrollment token is unknown, already used or expired'),
  GROUP_NOT_FOUND: e(404, false, 'admin', 'the tenant has no such repository group'),
  INTERNAL: e(
    500,
    false,
    'admin',
    'an unexpected failure (502 from the HTTP front door); the detail is in the log, not in the answer',
    [502],
  ),
  LABEL_INVALID: e(400, false, 'admin', 'a forward label is not <group>/<repo> in printable ASCII'),
  INVALID_CIDR: e(
    400,
    false,
    'admin',
    'an address block (allow_from, tunnel_from, trusted_proxies) is not a CIDR, or a list holds too many',
  ),
  LIMIT_INVALID: e(400, false, 'admin', 'a limit (rate, connections, traffic, balance) has an invalid value'),
  MANAGED_LIMIT: e(409, false, 'admin', 'the tenant has as many managed repositories as a tenant may have'),
  MANAGED_NOT_FOUND: e(404, false, 'admin', 'the tenant has no such managed repository'),
  METHOD_NOT_ALLOWED: e(405, false, 'admin', 'the HTTP method is not allowed on this path'),
  NOT_FOUND: e(404, false, 'admin', 'no such resource or endpoint'),
  PORT_NOT_LEASED: e(403, false, 'admin', "the port asked for is not one of the tenant's leases"),
  PORT_RANGE_EXHAUSTED: e(503, true, 'admin', 'no free port is left in the lease range'),
  PUBLIC_KEY_INVALID: e(400, false, 'admin', 'not a usable SSH public key'),
  QUOTA_INVALID: e(400, false, 'admin', 'a quota is not a whole number from 0 to 3000'),
  TENANT_DISABLED: e(403, false, 'admin', 'the tenant is disabled (quota 0)'),
  TENANT_EXISTS: e(409, false, 'admin', 'the tenant already exists'),
  TENANT_ID_INVALID: e(400, false, 'admin', 'a tenant id is not 1-63 characters a-z, 0-9, "_" or "-"'),
  TENANT_NOT_FOUND: e(404, false, 'admin', 'no such tenant'),
  TENANT_QUOTA_EXCEEDED: e(429, false, 'admin', "the tenant's forward quota is used up"),
  UNAUTHORIZED: e(401, false, 'admin', 'missing or wrong admin token / credential'),
  UNAVAILABLE: e(503, true, 'admin', 'a service the request needs (e.g. the store) is unavailable'),

  // dashboard single sign-on (admin.oidc)
  CROSS_SITE_REFUSED: e(
    403,
    false,
    'admin',
    'a change with a dashboard session cookie came from another site, or without the CSRF token',
  ),
  READ_ONLY_ROLE: e(403, false, 'admin', 'the dashboard user has the viewer role: changes are refused'),
  DASHBOARD_SESSION_ENDED: e(
    401,
    false,
    'admin',
    'the dashboard session expired or was signed out: sign in again',
  ),
  SSO_FAILED: e(
    502,
    true,
    'admin',
    'the identity provider cannot be reached (502), or its answer failed verification or reported an error (403)',
    [403],
  ),
  SSO_NOT_ALLOWED: e(
    403,
    false,
    'admin',
    'the identity provider vouched for a user no role or allow list names',
  ),
  SSO_SESSIONS_FULL: e(
    503,
    true,
    'admin',
    'the dashboard session store is full (admin.oidc.session.max_sessions)',
  ),

  // configuration and startup
  AUDIT_LOG_UNWRITABLE: e(400, false, 'config', 'the audit log file cannot be opened for writing'),
  CONFIG_INVALID: e(400, false, 'config', 'a config file (or option) has invalid or unknown keys'),
  CONFIG_UNREADABLE: e(400, false, 'config', 'a config file cannot be read'),
  DATA_DIR_UNWRITABLE: e(400, false, 'config', 'the data directory cannot be written'),
  HOST_KEY_INVALID: e(400, false, 'config', 'a host key file is not an SSH private key'),
  HOST_KEY_MISSING: e(400, false, 'config', 'a host key file does not exist'),
  LISTEN_FAILED: e(500, false, 'config', 'a listener could not be opened'),

  // CLI
  ADMIN_ERROR: e(
    502,
    false,
    'cli',
    'the admin API answered an error without a Tether code (e.g. a proxy in front of it)',
  ),
  ADMIN_TOKEN_MISSING: e(401, false, 'cli', 'no admin token is configured for the CLI'),
  ADMIN_UNREACHABLE: e(503, true, 'cli', 'the admin API cannot be reached'),
  ENROLLMENT_MISMATCH: e(500, false, 'cli', 'the gateway enrolled a different tenant or key than asked'),
  FILE_EXISTS: e(409, false, 'cli', 'a file to be written already exists (use --force)'),
  PUBLIC_KEY_UNREADABLE: e(400, false, 'cli', 'a public key file cannot be read'),
  UNREGISTER_FAILED: e(
    500,
    false,
    'cli',
    'the key was not unregistered (403 when the gateway refused it, 500 when it still logs in)',
    [403],
  ),
  USAGE: e(400, false, 'cli', 'wrong command-line usage'),

  // connector (customer side)
  CONNECTOR_ALREADY_RUNNING: e(409, false, 'connector', 'a connector already runs with this state directory'),
  CONNECTOR_METRICS_LISTEN_FAILED: e(
    400,
    false,
    'connector',
    "the connector's metrics address cannot be opened",
  ),
  CONNECTOR_NO_TENANT: e(400, false, 'connector', 'connect.yaml names no tenant'),
  CONNECTOR_NOT_RUNNING: e(404, false, 'connector', 'no connector runs with this state directory'),
  CONNECTOR_PROTOCOL: e(500, false, 'connector', 'the connector sent an unreadable control-socket answer'),
  CONNECTOR_START_FAILED: e(500, false, 'connector', 'the background connector did not start'),
  CONNECTOR_STOP_FAILED: e(500, false, 'connector', 'the background connector did not stop'),
  CONNECTOR_TIMEOUT: e(503, true, 'connector', 'the connector did not answer on its control socket in time'),
  CONNECTOR_UNREACHABLE: e(503, true, 'connector', "the connector's control socket cannot be reached"),
  GATEWAY_AUTH_FAILED: e(401, true, 'connector', "the gateway refused the connector's key"),
  GATEWAY_CA_INVALID: e(400, false, 'connector', 'gateway_ca holds no usable certificate'),
  GATEWAY_HOST_KEY_MISMATCH: e(403, false, 'connector', "the gateway's host key is not the one expected"),
  GATEWAY_NOT_TLS: e(502, true, 'connector', 'the gateway address does not speak TLS'),
  GATEWAY_REFUSED: e(502, true, 'connector', 'the gateway refused the connection'),
  GATEWAY_SESSION_FAILED: e(503, true, 'connector', 'the SSH session with the gateway failed or ended'),
  GATEWAY_TIMEOUT: e(503, true, 'connector', 'the gateway did not answer in time'),
  GATEWAY_TLS_EXPIRED: e(502, true, 'connector', "the gateway's TLS certificate has expired"),
  GATEWAY_TLS_FAILED: e(
    502,
    true,
    'connector',
    'the TLS handshake with the gateway failed (504 when it timed out)',
    [504],
  ),
  GATEWAY_TLS_NAME_MISMATCH: e(502, true, 'connector', "the gateway's TLS certificate is for another name"),
  GATEWAY_TLS_NOT_YET_VALID: e(502, true, 'connector', "the gateway's TLS certificate is not valid yet"),
  GATEWAY_TLS_REFUSED: e(502, true, 'connector', "the gateway's TLS certificate was refused"),
  GATEWAY_TLS_UNTRUSTED: e(
    502,
    true,
    'connector',
    "the gateway's TLS certificate is not signed by a trusted CA",
  ),
  GATEWAY_UNREACHABLE: e(
    503,
    true,
    'connector',
    'the gateway cannot be reached (504 when no connection in time)',
    [504],
  ),
  GATEWAY_WS_FAILED: e(
    502,
    true,
    'connector',
    'the WebSocket upgrade to the gateway failed (504 when it timed out)',
    [504],
  ),
  GATEWAY_WS_NOT_FOUND: e(404, true, 'connector', 'the gateway has no WebSocket tunnel at that path'),
  GATEWAY_WS_REFUSED: e(502, true, 'connector', 'the WebSocket upgrade was refused'),
  PROXY_AUTH_REQUIRED: e(407, true, 'connector', 'the outbound proxy wants (other) credentials'),
  PROXY_FAILED: e(502, true, 'connector', 'the outbound proxy closed without answering CONNECT'),
  PROXY_FORBIDDEN: e(403, true, 'connector', "the outbound proxy's rules refuse the destination"),
  PROXY_INVALID: e(400, false, 'connector', 'the outbound proxy setting is invalid'),
  PROXY_REFUSED: e(502, true, 'connector', 'the outbound proxy answered CONNECT with an error'),
  PROXY_TIMEOUT: e(504, true, 'connector', 'the outbound proxy did not answer in time'),
  PROXY_UNREACHABLE: e(503, true, 'connector', 'the outbound proxy cannot be reached'),
  PROXY_UPSTREAM_FAILED: e(
    502,
    true,
    'connector',
    "the outbound proxy could not reach the gateway (the proxy's 502/503/504)",
    [503, 504],
  ),
  RELOAD_STATE_DIR: e(400, false, 'connector', 'a reload would change state_dir (needs a restart)'),
  RELOAD_UNSUPPORTED: e(500, false, 'connector', 'this connector cannot re-read its config'),
  SSH_KEY_INVALID: e(400, false, 'connector', 'ssh_key is not a usable private key'),
  SSH_KEY_MISSING: e(400, false, 'connector', 'ssh_key does not exist'),
  SSH_KEY_UNPROTECTED: e(400, false, 'connector', 'ssh_key is readable by other users'),
  SSH_KEY_UNREADABLE: e(400, false, 'connector', 'ssh_key cannot be read'),
  STATE_DIR_TOO_LONG: e(400, false, 'connector', "state_dir's path is too long for a control socket"),

  // tunnel control protocol (gateway → connector messages)
  BAD_CONTROL_MESSAGE: e(400, false, 'control', 'a control message is malformed'),
  BAD_MANAGED_REPORT: e(400, false, 'control', "a connector's report on a managed repository is malformed"),
  BAD_REPO_META: e(400, false, 'control', 'repository metadata is malformed'),
  CHANNEL_LIMIT: e(429, true, 'control', 'the session has too many open channels'),
  ENROLLMENT_ONLY: e(403, false, 'control', 'an enrollment session may only enroll a key'),
  FORWARD_RATE_LIMITED: e(429, true, 'control', 'forward requests come faster than the session rate'),
  FORWARD_REFUSED: e(403, false, 'control', 'the gateway refused a forward (connector side)'),
  PORT_UNAVAILABLE: e(503, true, 'control', 'the leased port cannot be opened on the gateway'),
  REPO_META_LIMIT: e(429, false, 'control', 'the session described more repositories than its quota allows'),
  SESSION_ENDED: e(503, true, 'control', 'the gateway ended the session'),
  UNKNOWN_CONTROL_MESSAGE: e(400, false, 'control', 'a control message of an unknown type'),

  // forwarded connections (core)
  CONNECTION_LIMIT: e(429, true, 'forward', 'a concurrent-connection limit is reached'),
  FORWARD_OFFLINE: e(503, true, 'forward', 'the repository has no connected connector'),
  FORWARD_OPEN_FAILED: e(502, true, 'forward', 'the connector could not open the forwarded connection'),
  FORWARD_WITHDRAWN: e(503, true, 'forward', 'the forward was withdrawn while opening'),
  SOURCE_NOT_ALLOWED: e(
    403,
    false,
    'forward',
    "the caller's address is outside the tenant's or repository's allow_from (or the connector's outside tunnel_from)",
  ),
  TRAFFIC_QUOTA_EXHAUSTED: e(429, false, 'forward', "the tenant's traffic quota is used up"),

  // access proxy (tenants' HTTP CONNECT/forward proxy)
  BAD_FRAMING: e(
    400,
    false,
    'access-proxy',
    'ambiguous request framing (Content-Length / Transfer-Encoding)',
  ),
  BAD_REPOSITORY_ADDRESS: e(400, false, 'access-proxy', 'the repository address is malformed'),
  HEADERS_TOO_LARGE: e(431, false, 'access-proxy', 'the request head is over its size limit'),
  NOT_A_PROXY_REQUEST: e(400, false, 'access-proxy', 'the request is not a proxy request'),
  NOT_AN_HTTP_REPOSITORY: e(400, false, 'access-proxy', 'the repository does not speak HTTP (use CONNECT)'),
  PROXY_AUTHENTICATION_REQUIRED: e(407, false, 'access-proxy', 'no proxy credentials were sent'),
  PROXY_AUTHORIZATION_MALFORMED: e(400, false, 'access-proxy', 'the Proxy-Authorization header is malformed'),
  REPOSITORY_NOT_FOUND: e(404, false, 'access-proxy', 'no such repository'),
  REQUEST_TIMEOUT: e(408, false, 'access-proxy', 'the request head did not arrive in time'),
  TENANT_MISMATCH: e(403, false, 'access-proxy', "the credentials are for another tenant than the address's"),
  TOO_MANY_FAILURES: e(429, true, 'access-proxy', 'too many failed logins from this address'),
  UPGRADE_NOT_PROXIED: e(400, false, 'access-proxy', 'protocol upgrades are not proxied'),
  UPSTREAM_BAD_RESPONSE: e(
    502,
    false,
    'access-proxy',
    'the repository or upstream sent a malformed response',
  ),
  UPSTREAM_FAILED: e(502, true, 'access-proxy', 'the repository failed while answering'),
  UPSTREAM_METADATA_INVALID: e(502, false, 'access-proxy', 'the repository metadata is unusable'),
  USE_CONNECT: e(400, false, 'access-proxy', 'this repository must be reached with CONNECT'),
  WRONG_GROUP_KEY: e(403, false, 'access-proxy', 'the group key is wrong'),

  // HTTP front door
  DENIED: e(403, false, 'http-proxy', "the caller's token does not give access to this route or path"),
  NO_ROUTE: e(404, false, 'http-proxy', 'no route for this host and path (or login)'),
  READ_ONLY: e(405, false, 'http-proxy', 'the route is read-only'),
  READ_ONLY_BODY: e(400, false, 'http-proxy', 'a read-only route got a request with a body'),
  TOKEN_FILE_INVALID: e(400, false, 'http-proxy', 'the token file is invalid'),
  TOKEN_FILE_UNREADABLE: e(400, false, 'http-proxy', 'the token file cannot be read'),
  UPSTREAM_AUTH_REFUSED: e(502, false, 'http-proxy', 'the upstream refused the configured credential'),
  UPSTREAM_CA_UNREADABLE: e(400, false, 'http-proxy', "an upstream's CA file cannot be read"),
  UPSTREAM_CREDENTIAL_INVALID: e(502, true, 'http-proxy', 'the upstream credential is not valid'),
  UPSTREAM_CREDENTIAL_UNAVAILABLE: e(503, true, 'http-proxy', 'the upstream credential cannot be obtained'),
  UPSTREAM_TIMEOUT: e(504, true, 'http-proxy', 'the upstream did not answer in time'),
  UPSTREAM_UNREACHABLE: e(502, true, 'http-proxy', 'the upstream cannot be reached'),
  VERIFIER_UNAVAILABLE: e(503, true, 'http-proxy', 'the token verifier is unavailable'),

  // SSH front door (login refusals and target failures)
  ACCESS_CHECK_UNAVAILABLE: e(503, true, 'ssh-proxy', 'the OAuth access check is unavailable'),
  ACCESS_DENIED: e(403, false, 'ssh-proxy', 'the OAuth access check denied access'),
  BAD_SECRET: e(401, false, 'ssh-proxy', 'the password is empty or too long'),
  BAD_TARGET: e(400, false, 'ssh-proxy', 'the login names an invalid target'),
  BAD_USERNAME: e(400, false, 'ssh-proxy', 'the login name is malformed'),
  CODE_REJECTED: e(401, false, 'ssh-proxy', 'the OAuth authorization code was rejected'),
  NO_LOGIN: e(403, false, 'ssh-proxy', 'no target login is configured for the repository'),
  NOT_SSH: e(400, false, 'ssh-proxy', 'the repository is not an ssh repository'),
  ROUTE_INVALID: e(502, false, 'ssh-proxy', 'the access check returned an unusable route'),
  TARGET_FAILED: e(502, true, 'ssh-proxy', 'the target session failed'),
  TARGET_HOST_KEY_MISMATCH: e(502, false, 'ssh-proxy', "the target's host key is not the one configured"),
  TARGET_HOST_KEY_UNKNOWN: e(502, false, 'ssh-proxy', 'no host key is configured for the target'),
  TARGET_LOGIN_FAILED: e(502, false, 'ssh-proxy', 'the target refused the configured login'),
  TARGET_TIMEOUT: e(502, true, 'ssh-proxy', 'the target did not complete the SSH handshake in time'),
  TARGET_UNKNOWN: e(403, false, 'ssh-proxy', 'the realm has no such target'),
  TARGET_UNREACHABLE: e(
    502,
    true,
    'ssh-proxy',
    'the target cannot be reached (504 when dialing timed out)',
    [504],
  ),
  THROTTLED: e(429, true, 'ssh-proxy', 'too many failed logins from this address'),
  TOKEN_ENDPOINT_UNAVAILABLE: e(503, true, 'ssh-proxy', 'the OAuth token endpoint is unavailable'),
  UNKNOWN_REALM: e(401, false, 'ssh-proxy', 'the login names an unknown realm'),
  WRONG_PASSWORD: e(401, false, 'ssh-proxy', 'the password is wrong'),

  // peer mode
  CERTS_EXIST: e(409, false, 'peer', 'a certificate file to be written already exists (use --force)'),
  CERTS_INVALID: e(400, false, 'peer', 'certificate generation options or files are invalid'),
  PAYLOAD_TOO_LARGE: e(413, false, 'peer', 'the peer API request body is over its size limit'),
  PEER_EXPOSURE_LIMIT: e(429, false, 'peer', 'the peer has as many exposures as it keeps (delete one first)'),
  PEER_LISTEN_FAILED: e(400, false, 'peer', 'a peer listener could not be opened'),
  PEER_OPTIONS_INVALID: e(400, false, 'peer', 'the peer options are invalid'),
  PEER_STOPPING: e(503, true, 'peer', 'the peer is stopping (draining) and takes no new exposures'),
  PEER_TLS_INVALID: e(400, false, 'peer', 'the peer TLS material is invalid'),
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof CATALOG;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(CATALOG, code);
}

/** A code read from the wire (control socket, control protocol, admin API): kept when known, else `fallback`. */
export function toErrorCode(code: unknown, fallback: ErrorCode): ErrorCode {
  return isErrorCode(code) ? code : fallback;
}
