/** Label values from outside (tenant ids, reasons, codes): at most `max` distinct ones, then `other`. */
export class BoundedLabels {
  private readonly known = new Set<string>();

  constructor(
    private readonly max: number,
    private readonly other = '_other',
  ) {}

  get(value: string): string {
    if (this.known.has(value)) return value;
    if (this.known.size >= this.max) return this.other;
    this.known.add(value);
    return value;
  }

  forget(value: string): boolean {
    return this.known.delete(value);
  }
}
