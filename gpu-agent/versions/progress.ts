/**
 * The progress bar `floodgate agent` shows while it fetches a version (log-update, on a
 * terminal only: the log lines say the same to anything else): bytes, rate, peers, and the
 * share that came from the origin.
 */
import { createLogUpdate } from "log-update";
import type { FetchProgress } from "./fetch.ts";

const MiB = 1024 * 1024;
const WIDTH = 24;

/**
 * One version's transfer as one line.
 *
 * @example
 * renderTransfer("demo@1", { bytes: 256 * MiB, totalBytes: 512 * MiB, ... }, 25 * MiB)
 * // "demo@1 [############------------]  50% 256/512 MiB 25.0 MiB/s · 15 peers · origin 6%"
 */
export function renderTransfer(name: string, p: FetchProgress, bytesPerSecond: number): string {
  const share = p.totalBytes > 0 ? Math.min(1, p.bytes / p.totalBytes) : 1;
  const filled = Math.round(share * WIDTH);
  const parts = [
    `${name} [${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}] ${String(Math.floor(share * 100)).padStart(3)}%`,
    `${(p.bytes / MiB).toFixed(0)}/${(p.totalBytes / MiB).toFixed(0)} MiB ${(bytesPerSecond / MiB).toFixed(1)} MiB/s`,
  ];
  let line = parts.join(" ");
  if (p.peers !== undefined) line += ` · ${p.peers} peer${p.peers === 1 ? "" : "s"}`;
  if (p.originBytes !== undefined && p.bytes > 0) line += ` · origin ${Math.round((100 * p.originBytes) / p.bytes)}%`;
  return line;
}

/** The bars of the versions being fetched, redrawn in place on a terminal. */
export class TransferBar {
  private readonly draw: ReturnType<typeof createLogUpdate> | undefined;
  private readonly transfers = new Map<string, { p: FetchProgress; startedAt: number }>();

  constructor(stream: NodeJS.WriteStream) {
    this.draw = stream.isTTY ? createLogUpdate(stream) : undefined;
  }

  update(name: string, p: FetchProgress): void {
    if (!this.draw) return;
    const now = performance.now();
    const t = this.transfers.get(name) ?? { p, startedAt: now };
    t.p = p;
    this.transfers.set(name, t);
    const lines = [...this.transfers].map(([n, x]) =>
      renderTransfer(n, x.p, x.p.bytes / Math.max(0.001, (now - x.startedAt) / 1000)),
    );
    this.draw(lines.join("\n"));
    if (p.bytes >= p.totalBytes) {
      // Done: the line stays as it is, and the next transfer draws below it.
      this.transfers.delete(name);
      if (this.transfers.size === 0) this.draw.done();
    }
  }
}
