import { Command } from 'commander';
import { registerCerts } from './certs.js';
import { registerConnector } from './connector.js';
import { registerGateway } from './gateway.js';
import { registerHttpProxy } from './http-proxy.js';
import { registerPeer } from './peer.js';
import { registerTenants } from './tenants.js';
import { VERSION } from './version.js';

/** The `tether` command tree. Each command group lives in its own file. */
export function buildProgram(): Command {
  const program = new Command('tether')
    .description('Reach services inside private networks through an outbound SSH tunnel.')
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false })
    .exitOverride();
  registerGateway(program);
  registerTenants(program);
  registerConnector(program);
  registerPeer(program);
  registerCerts(program);
  registerHttpProxy(program);
  return program;
}
