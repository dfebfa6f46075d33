import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { formatTarget, parseRepositoryUri, SERVICE_NAMES } from './uri.js';

function ok(uri: string) {
  const r = parseRepositoryUri(uri);
  if (!r.ok) assert.fail(`expected ${uri} to parse, got: ${r.message}`);
  return r.target;
}

function bad(uri: unknown): string {
  const r = parseRepositoryUri(uri);
  if (r.ok) assert.fail(`expected ${String(uri)} to be refused`);
  return r.message;
}

describe('repository URIs', () => {
  test('the examples from DESIGN.md parse', () => {
    assert.deepEqual(ok('smb://samba.example.com:139'), {
      service: 'smb',
      scheme: null,
      host: 'samba.example.com',
      port: 139,
      path: null,
    });
    assert.deepEqual(ok('webdav+http://webdav.example.com:80/'), {
      service: 'webdav',
      scheme: 'http',
      host: 'webdav.example.com',
      port: 80,
      path: '/',
    });
    assert.deepEqual(ok('cmis+https://cmis.example.com:443/cmisatom'), {
      service: 'cmis',
      scheme: 'https',
      host: 'cmis.example.com',
      port: 443,
      path: '/cmisatom',
    });
  });

  test('default ports by service and scheme', () => {
    assert.equal(ok('smb://fs').port, 445);
    assert.equal(ok('ssh://box').port, 22);
    assert.equal(ok('http://web').port, 80);
    assert.equal(ok('https://web').port, 443);
    assert.equal(ok('webdav+http://dav').port, 80);
    assert.equal(ok('webdav+https://dav').port, 443);
    assert.equal(ok('cq5+https://cq').port, 443);
    assert.equal(ok('alfresco+http://alf/alfresco').port, 80);
    assert.equal(ok('tcp://db:5432').port, 5432);
  });

  test('IPv4 and bracketed IPv6 hosts; service and host are case-insensitive', () => {
    assert.equal(ok('tcp://10.0.0.1:5432').host, '10.0.0.1');
    const v6 = ok('tcp://[::1]:7000');
    assert.equal(v6.host, '::1');
    assert.equal(formatTarget(v6), 'tcp://[::1]:7000');
    const upper = ok('WebDAV+HTTPS://Files.Example.COM/dav');
    assert.equal(upper.service, 'webdav');
    assert.equal(upper.scheme, 'https');
    assert.equal(upper.host, 'files.example.com');
  });

  test('webdav without a scheme says which schemes it takes', () => {
    assert.equal(
      bad('webdav://dav.example.com:80/'),
      'webdav needs a scheme: webdav+http:// or webdav+https://',
    );
    assert.match(bad('cmis://x'), /cmis needs a scheme: cmis\+http:\/\/ or cmis\+https:\/\//);
  });

  test('tcp without a port', () => {
    assert.equal(bad('tcp://db.internal'), 'tcp needs a port: tcp://db.internal:port');
  });

  test('unknown service lists the known ones', () => {
    assert.equal(
      bad('ftp://files:21'),
      'unknown service "ftp": use one of smb, webdav, cq5, cmis, alfresco, ssh, http, https, tcp',
    );
  });

  test('port out of range, port not a number', () => {
    assert.equal(bad('tcp://db:70000'), 'port 70000 is out of range (1-65535)');
    assert.equal(bad('tcp://db:0'), 'port 0 is out of range (1-65535)');
    assert.equal(bad('smb://fs:abc'), 'port "abc" is not a number');
  });

  test('a scheme where none belongs, an unknown scheme', () => {
    assert.match(bad('smb+http://fs'), /smb takes no scheme \(remove "\+http"\)/);
    assert.match(
      bad('webdav+ftp://dav'),
      /unknown scheme "ftp" for webdav: use webdav\+http:\/\/ or webdav\+https:\/\//,
    );
  });

  test('not a URI, empty, not a string, credentials, unbracketed IPv6', () => {
    assert.match(
      bad('fileserver:445'),
      /is not a repository URI: use service\[\+scheme\]:\/\/host\[:port\]\[\/path\]/,
    );
    assert.match(bad(''), /is empty/);
    assert.match(bad(445), /must be a URI string/);
    assert.match(bad(null), /got nothing/);
    assert.match(bad('smb://user:secret@fs'), /credentials do not belong in the URI/);
    assert.match(bad('tcp://::1:80'), /write it in brackets/);
    assert.match(bad('smb://bad host'), /white space/);
    assert.match(bad('smb://:445'), /has no host/);
  });

  test('property: every service with a valid host and port round-trips through formatTarget', () => {
    const host = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}$/);
    const service = fc.constantFrom(...SERVICE_NAMES);
    fc.assert(
      fc.property(service, host, fc.integer({ min: 1, max: 65535 }), fc.boolean(), (svc, h, port, https) => {
        const needsScheme = ['webdav', 'cq5', 'cmis', 'alfresco'].includes(svc);
        const uri = `${svc}${needsScheme ? (https ? '+https' : '+http') : ''}://${h}:${port}/p`;
        const t = ok(uri);
        assert.equal(t.port, port);
        assert.equal(t.host, h);
        assert.equal(formatTarget(t), uri);
      }),
    );
  });

  test('property: arbitrary strings never throw', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        parseRepositoryUri(s);
      }),
    );
  });
});
