import { credentialInvalid, type SecretCheck, type SecretProvider } from './types.js';

/** A credential written into the config (usually through `${ENV_VAR}`). */
export class StaticSecret implements SecretProvider {
  private readonly problem: string | undefined;

  constructor(
    private readonly value: string,
    check?: SecretCheck,
  ) {
    this.problem = check?.(value);
  }

  current(): string {
    if (this.problem) throw credentialInvalid(`the configured value: ${this.problem}`);
    return this.value;
  }

  async start(): Promise<void> {}

  stop(): void {}
}
