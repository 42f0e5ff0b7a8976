/**
 * Job event streams for the workerd suites: opening a job's events through the Worker's own
 * fetch handler, and reading Server-Sent Events with a deadline.
 */
import { exports } from "cloudflare:workers";

export interface Sse {
  id: string;
  event: string;
  data: Record<string, unknown>;
}

/** Reads Server-Sent Events from a response until `stop` says so or the stream ends. */
export async function readSse(res: Response, stop: (e: Sse, all: Sse[]) => boolean, ms = 5000): Promise<Sse[]> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  const out: Sse[] = [];
  let buf = "";
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no end of events within ${ms} ms; got ${out.map((e) => e.event).join(",")}`);
    const chunk = await Promise.race([reader.read(), new Promise<"late">((r) => setTimeout(() => r("late"), left))]);
    if (chunk === "late") continue;
    if (chunk.done) return out;
    buf += dec.decode(chunk.value, { stream: true });
    let end: number;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const fields = Object.fromEntries(
        block
          .split("\n")
          .filter((l) => !l.startsWith(":") && l.includes(":"))
          .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trimStart()]),
      );
      if (!fields.event) continue;
      const e = {
        id: fields.id ?? "",
        event: fields.event,
        data: JSON.parse(fields.data ?? "{}") as Record<string, unknown>,
      };
      out.push(e);
      if (stop(e, out)) {
        await reader.cancel();
        return out;
      }
    }
  }
}

/** The sequence number of an event's id (`<generation>.<sequence>`). */
export function seq(e: Sse): number {
  return Number(e.id.split(".")[1]);
}

export function events(id: string, key: string, headers: Record<string, string> = {}, query = ""): Promise<Response> {
  return exports.default.fetch(
    new Request(`http://edge.test/v1/jobs/${id}/events${query}`, {
      headers: { authorization: `Bearer ${key}`, ...headers },
    }),
  );
}
