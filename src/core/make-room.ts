/**
 * Makes room for one more entry in a map bounded at `max`: the expired ones go, then the oldest
 * (a Map keeps insertion order). The HTTP front door's verdict cache and, under `workers`, the
 * primary's shared verdicts use it; it lives here so that the primary does not load the front door.
 */
export function makeRoom(entries: Map<string, { expires: number }>, max: number, now: number): void {
  if (entries.size < max) return;
  for (const [k, v] of entries) if (v.expires <= now) entries.delete(k);
  while (entries.size >= max) {
    const oldest = entries.keys().next().value;
    if (oldest === undefined) break;
    entries.delete(oldest);
  }
}
