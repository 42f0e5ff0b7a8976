/**
 * Job event streams for the workerd suites: opening a job's events through the Worker's own
 * fetch handler, and reading Server-Sent Events with a deadline.
 */
import { exports } from "cloudflare:workers";
import { createParser } from "eventsource-parser";

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
  const parsed: Sse[] = [];
  const parser = createParser({
    onEvent: (m) => {
      if (m.event) parsed.push({ id: m.id ?? "", event: m.event, data: JSON.parse(m.data) as Record<string, unknown> });
    },
  });
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no end of events within ${ms} ms; got ${out.map((e) => e.event).join(",")}`);
    const chunk = await Promise.race([reader.read(), new Promise<"late">((r) => setTimeout(() => r("late"), left))]);
    if (chunk === "late") continue;
    if (chunk.done) return out;
    parser.feed(dec.decode(chunk.value, { stream: true }));
    for (const e of parsed.splice(0)) {
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
