/**
 * Plain-text tables for the CLI's human output: what `floodgate agents`, `queues`, `jobs` and
 * `rollout` print when not asked for `--json`.
 */

/** Columns padded to their widest cell, two spaces apart. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n") + "\n";
}
