/** The raw-port front door's connection boundary: a dependency that throws closes that connection only. */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { systemClock } from '../../core/clock.js';
import type { ForwardRegistry } from '../../core/forward-registry.js';
import { silentLogger } from '../../log/index.js';
import { ConnectionBroker } from '../../tunnel/broker.js';
import { LeaseListeners } from './index.js';

/** A tunnel channel that echoes what it is sent. */
function echoStream(): Duplex {
  const d: Duplex = new Duplex({
    read() {},
    write(c, _e, cb) {
      d.push(c);
      cb();
    },
    final(cb) {
      d.push(null);
      cb();
    },
  });
  return d;
}

function talk(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('ping'));
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got === 'ping') s.end();
    });
    s.on('close', () => resolve(got));
    s.on('error', () => {});
  });
}

describe('raw-port connection boundary', () => {
  it('a throw inside a connection handler closes that connection; the next one works and the process lives', async () => {
    const port = await new Promise<number>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => r(p));
      });
    });
    let mode: 'sync' | 'async' | 'ok' = 'sync';
    const registry = {
      byPort: () => {
        if (mode === 'sync') throw new Error('injected: byPort');
        return { tenant: 't', label: 'g/r' };
      },
      remoteByPort: () => undefined,
      open: async () => {
        if (mode === 'async')
          return {
            get stream(): Duplex {
              throw new Error('injected: stream');
            },
            close() {},
          };
        return { stream: echoStream(), close() {} };
      },
    } as unknown as ForwardRegistry;
    const log = silentLogger();
    const broker = new ConnectionBroker({ registry, clock: systemClock, log });
    const l = new LeaseListeners('127.0.0.1', registry, log, broker);
    await l.open(port);
    try {
      assert.equal(await talk(port), '', 'a synchronous throw closes the connection');
      mode = 'async';
      assert.equal(await talk(port), '', 'a throw after the channel opened closes the connection');
      mode = 'ok';
      assert.equal(await talk(port), 'ping', 'the next connection works');
    } finally {
      await l.closeAll();
    }
  });
});
