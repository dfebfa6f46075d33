import type { SecretProvider } from './types.js';

/** A credential written into the config (usually through `${ENV_VAR}`). */
export class StaticSecret implements SecretProvider {
  constructor(private readonly value: string) {}

  current(): string {
    return this.value;
  }

  async start(): Promise<void> {}

  stop(): void {}
}
