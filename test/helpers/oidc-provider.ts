import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

/**
 * A real OpenID Connect provider for tests: the certified `oidc-provider` package on a loopback
 * port, with its development login form (any password; the login names the account) and consent
 * page, which a browser drives like a person would. Accounts carry `email`, `email_verified`,
 * `name` and `groups` claims (scope `groups`).
 *
 * oidc-provider accepts a plain-http issuer outside production mode (NODE_ENV is not
 * "production" in tests), so the issuer is http://127.0.0.1:<port>.
 */

export interface TestUser {
  id: string;
  email: string;
  groups: string[];
  name?: string;
  /** Default true. */
  emailVerified?: boolean;
}

export interface TestClient {
  client_id: string;
  client_secret: string;
  redirect_uris: string[];
}

export interface TestOidcProvider {
  issuer: string;
  /**
   * Registers the relying party (once its redirect URI is known: the gateway listens on port 0).
   * Requests before this are answered 503.
   */
  start(client: TestClient): void;
  /** Token-endpoint requests the provider saw (method and path), to show the gateway used it. */
  requests: string[];
  close(): Promise<void>;
}

export async function startOidcProvider(users: TestUser[]): Promise<TestOidcProvider> {
  let handler: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | null = null;
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url?.split('?')[0]}`);
    if (!handler) {
      res.writeHead(503).end('provider not configured yet');
      return;
    }
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const byId = new Map(users.map((u) => [u.id, u]));

  return {
    issuer,
    requests,
    start(client) {
      const provider = new Provider(issuer, {
        clients: [
          {
            ...client,
            response_types: ['code'],
            grant_types: ['authorization_code'],
            token_endpoint_auth_method: 'client_secret_basic',
          },
        ],
        pkce: { required: () => true },
        scopes: ['openid', 'email', 'profile', 'groups'],
        claims: {
          openid: ['sub'],
          email: ['email', 'email_verified'],
          profile: ['name'],
          groups: ['groups'],
        },
        findAccount: (_ctx, id) => {
          const u = byId.get(id);
          if (!u) return undefined;
          return {
            accountId: id,
            claims: () => ({
              sub: id,
              email: u.email,
              email_verified: u.emailVerified ?? true,
              name: u.name ?? id,
              groups: u.groups,
            }),
          };
        },
        cookies: { keys: [randomBytes(32).toString('base64url')] },
        features: { devInteractions: { enabled: true } },
      });
      handler = provider.callback();
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
