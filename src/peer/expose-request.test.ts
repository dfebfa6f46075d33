import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTetherError } from '../errors/index.js';
import { parseExposeRequest } from './expose-request.js';

const good = {
  name: 'devservice',
  source_port: 9090,
  remote_connector_addr: '82.42.12.21:9092',
  destination_addr: 'localhost:9090',
  type: 'local',
};

function problems(body: unknown): { message: string; details: { path: string; message: string }[] } {
  try {
    parseExposeRequest(body);
  } catch (e) {
    assert.ok(isTetherError(e, 'BAD_REQUEST'));
    assert.equal(e.status, 400);
    return { message: e.message, details: e.details };
  }
  assert.fail('expected a 400');
}

test('the body of the connector this API comes from is accepted as is', () => {
  const spec = parseExposeRequest(good);
  assert.equal(spec.name, 'devservice');
  assert.equal(spec.sourcePort, 9090);
  assert.equal(spec.sourceAddr, '0.0.0.0');
  assert.deepEqual(spec.remoteConnectorAddr, { host: '82.42.12.21', port: 9092 });
  assert.deepEqual(spec.destinationAddr, { host: 'localhost', port: 9090 });
  assert.equal(spec.type, 'local');
  assert.equal(parseExposeRequest({ ...good, type: 'REMOTE', extra: 1 }).type, 'remote');
  assert.equal(parseExposeRequest({ ...good, source_addr: '127.0.0.1' }).sourceAddr, '127.0.0.1');
});

test('every missing field is named', () => {
  const p = problems({});
  assert.deepEqual(
    p.details.map((d) => d.path),
    ['name', 'source_port', 'remote_connector_addr', 'destination_addr', 'type'],
  );
  assert.ok(p.details.every((d) => d.message === 'is required'));
  assert.match(p.message, /^invalid request: name: is required; source_port: is required/);
});

test('wrongly typed fields are named with what was expected', () => {
  const p = problems({ ...good, name: 5, source_port: '9090', type: 7 });
  assert.deepEqual(p.details, [
    { path: 'name', message: 'must be a string, got number 5' },
    { path: 'source_port', message: 'must be a whole number from 1 to 65535, got the string "9090"' },
    { path: 'type', message: 'must be "local" or "remote", got number 7' },
  ]);
});

test('unknown type, ports out of range and unparsable addresses are 400s naming the field', () => {
  assert.deepEqual(problems({ ...good, type: 'sideways' }).details, [
    { path: 'type', message: 'must be "local" or "remote", got the string "sideways"' },
  ]);
  assert.equal(problems({ ...good, source_port: 0 }).details[0]?.path, 'source_port');
  assert.equal(problems({ ...good, source_port: 65536 }).details[0]?.message, 'must be from 1 to 65535');
  assert.equal(
    problems({ ...good, source_port: 80.5 }).details[0]?.message,
    'must be a whole number from 1 to 65535',
  );
  assert.deepEqual(problems({ ...good, destination_addr: 'nonsense' }).details, [
    { path: 'destination_addr', message: '"nonsense" has no port (use "host:port")' },
  ]);
  assert.match(
    problems({ ...good, remote_connector_addr: 'x:99999' }).message,
    /remote_connector_addr: .*out of range/,
  );
  assert.equal(problems({ ...good, source_addr: 'not an address' }).details[0]?.path, 'source_addr');
  assert.equal(problems({ ...good, name: '  ' }).details[0]?.message, 'must not be empty');
});

test('a body that is not an object is refused', () => {
  for (const b of [null, [], 'x', 3]) assert.match(problems(b).message, /must be a JSON object/);
});
