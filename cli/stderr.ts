/**
 * stderr as the stream log-update draws on, for the CLI's live lines (cli/client-commands.ts's
 * Screen, upload bars in cli/local-files.ts): writes go through the command's io, so tests see
 * them, and the width is the terminal's.
 */
import { Writable } from "node:stream";

/** What of a command's io a live line needs. */
export interface StderrIo {
  stderr(s: string): void;
  tty: boolean;
  columns: number;
}

export function stderrStream(io: StderrIo): Writable {
  const stream = new Writable({
    decodeStrings: false,
    write(chunk: string, _encoding, done) {
      io.stderr(chunk);
      done();
    },
  });
  // Read on every draw: the terminal may be resized.
  return Object.defineProperties(stream, { columns: { get: () => io.columns }, isTTY: { value: io.tty } });
}
