/** RFC 4253 §11.1 reason codes the proxy uses. */
export const DISCONNECT = {
  HOST_NOT_ALLOWED_TO_CONNECT: 1,
  BY_APPLICATION: 11,
  CONNECTION_LOST: 10,
  NO_MORE_AUTH_METHODS_AVAILABLE: 14,
  ILLEGAL_USER_NAME: 15,
} as const;

/**
 * Ends an SSH connection with SSH_MSG_DISCONNECT carrying a description, which OpenSSH prints at
 * the default log level: how the proxy tells `ssh`, `scp` and `sftp` users why they were refused.
 */
export { disconnectWithReason } from '../../tunnel/ssh2-adapter.js';
