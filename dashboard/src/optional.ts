/**
 * Panels whose data comes from an endpoint an edge may not have yet (capacity, webhook
 * deliveries): read when present, "not available on this edge" on a 404 for the route.
 */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { call, errorMessage } from "./api.ts";

export type Optional<T> =
  | { state: "loading" }
  | { state: "absent" }
  | { state: "error"; message: string }
  | { state: "ok"; body: T };

/** Reads `path` now and every `everyMs` (0: once), while the panel is shown. */
export function useOptional<T>(path: string | null, everyMs = 0): Optional<T> {
  const [out, setOut] = useState<Optional<T>>({ state: "loading" });
  useEffect(() => {
    if (path === null) return;
    let stopped = false;
    const read = async () => {
      const a = await call<T>("GET", path).catch(() => null);
      if (stopped) return;
      if (!a) setOut({ state: "error", message: "the edge did not answer" });
      // An unknown route is `not_found`; a known route's own 404 (an unknown job) is another code.
      else if (a.status === 404 && errorCode(a.body) === "not_found") setOut({ state: "absent" });
      else if (a.status !== 200) setOut({ state: "error", message: errorMessage(a.body) });
      else setOut({ state: "ok", body: a.body });
    };
    void read();
    const timer = everyMs > 0 ? setInterval(read, everyMs) : undefined;
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [path, everyMs]);
  return out;
}

function errorCode(body: unknown): string | undefined {
  if (typeof body === "object" && body !== null && "error" in body) {
    const e = (body as { error: { code?: unknown } }).error;
    return typeof e.code === "string" ? e.code : undefined;
  }
  return undefined;
}

/** "Not available on this edge", or the loading and error states, or nothing when ready. */
export function OptionalState(props: { of: Optional<unknown>; what: string }) {
  switch (props.of.state) {
    case "loading":
      return html`<p class="muted">Loading ${props.what}…</p>`;
    case "absent":
      return html`<p class="muted" data-testid="not-available">${props.what}: not available on this edge.</p>`;
    case "error":
      return html`<p class="bad">${props.what}: ${props.of.message}</p>`;
    case "ok":
      return null;
  }
}

/** Any JSON value as nested definition lists: for answers whose shape this page does not know. */
export function Value(props: { v: unknown }): ReturnType<typeof html> {
  const v = props.v;
  if (Array.isArray(v)) {
    return v.length === 0
      ? html`<span class="muted">none</span>`
      : html`<ol>
          ${v.map((x) => html`<li><${Value} v=${x} /></li>`)}
        </ol>`;
  }
  if (typeof v === "object" && v !== null) {
    return html`<dl class="kv">
      ${Object.entries(v).map(
        ([k, x]) =>
          html`<dt>${k}</dt>
            <dd><${Value} v=${x} /></dd>`,
      )}
    </dl>`;
  }
  if (typeof v === "string" && /^https?:\/\//.test(v)) {
    return html`<a href=${v} target="_blank" rel="noopener noreferrer">${v}</a>`;
  }
  return html`<span>${v === null ? "—" : String(v)}</span>`;
}
