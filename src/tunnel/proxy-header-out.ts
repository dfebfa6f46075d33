import net from 'node:net';
import { normalizeAddress } from '../config/cidr.js';
import { proxyProtocol } from './proxy-protocol-lib.js';

/**
 * The PROXY protocol header a connector sends its destination first (`proxy_protocol: v1|v2` on
 * a repository of connect.yaml), naming the cloud caller the gateway put in the channel's
 * originator fields. A source that is not an IP address (a gateway that sent none) becomes
 * `PROXY UNKNOWN` (v1) or a `LOCAL` header (v2): the destination then uses the connection's own
 * addresses, as the spec says.
 */
export interface Endpoint {
  address: string;
  port: number;
}

function ipv6Bytes(address: string): number[] {
  const url = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const [head, tail] = url.includes('::') ? url.split('::') : [url, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out: number[] = [];
  for (const g of groups) {
    const v = Number.parseInt(g || '0', 16);
    out.push(v >> 8, v & 0xff);
  }
  return out;
}

export function buildProxyHeader(version: 'v1' | 'v2', source: Endpoint, destination: Endpoint): Buffer {
  const src = normalizeAddress(source.address);
  const family = net.isIP(src);
  const port = (p: number) => (Number.isInteger(p) && p >= 0 && p <= 65535 ? p : 0);
  const {
    Command,
    INETProtocol,
    IPv4Address,
    IPv4ProxyAddress,
    IPv6Address,
    IPv6ProxyAddress,
    Peer,
    TransportProtocol,
    UnspecProxyAddress,
    V1ProxyProtocol,
    V2ProxyProtocol,
  } = proxyProtocol();
  if (family === 0) {
    if (version === 'v1') return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    return Buffer.from(
      new V2ProxyProtocol(Command.LOCAL, TransportProtocol.UNSPEC, new UnspecProxyAddress()).build(),
    );
  }
  // both addresses of one family: a destination of the other family is named by the "any" address
  let dst = normalizeAddress(destination.address);
  if (net.isIP(dst) !== family) dst = family === 4 ? '0.0.0.0' : '::';
  if (version === 'v1') {
    const line = new V1ProxyProtocol(
      family === 4 ? INETProtocol.TCP4 : INETProtocol.TCP6,
      new Peer(src, port(source.port)),
      new Peer(dst, port(destination.port)),
    ).build();
    return Buffer.from(line, 'latin1');
  }
  const addr =
    family === 4
      ? new IPv4ProxyAddress(
          IPv4Address.createFrom(src.split('.').map(Number)),
          port(source.port),
          IPv4Address.createFrom(dst.split('.').map(Number)),
          port(destination.port),
        )
      : new IPv6ProxyAddress(
          IPv6Address.createFrom(ipv6Bytes(src)),
          port(source.port),
          IPv6Address.createFrom(ipv6Bytes(dst)),
          port(destination.port),
        );
  return Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM, addr).build());
}
