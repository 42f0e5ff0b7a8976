/**
 * The operator's dashboard, served by the edge at /dashboard: a sign-in with the admin key, then
 * panels fed by one live stream of aggregates (GET /v1/admin/live) for the whole tab. The panel
 * shown is in the URL's fragment (#overview, #agents, #rollouts, #capacity, #jobs/<id>), keys
 * 1–5 switch panels, / finds a job and Escape leaves a field.
 */
import { html, render } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import type { LiveFrame } from "../../shared/api.ts";
import { call, errorMessage, followLive, forgetKey, savedKey, saveKey } from "./api.ts";
import { Capacity } from "./capacity.ts";
import { JobInspector } from "./jobs.ts";
import { Agents, Overview } from "./overview.ts";
import { remember } from "./rates.ts";
import { Rollouts } from "./rollouts.ts";

const PANELS = [
  ["overview", "Overview"],
  ["agents", "Agents"],
  ["rollouts", "Rollouts"],
  ["capacity", "Capacity"],
  ["jobs", "Jobs"],
] as const;
type Panel = (typeof PANELS)[number][0];

function route(): { panel: Panel; arg: string } {
  const [name = "", ...rest] = location.hash.replace(/^#/, "").split("/");
  const panel = PANELS.find(([p]) => p === name)?.[0] ?? "overview";
  return { panel, arg: decodeURIComponent(rest.join("/")) };
}

function SignIn(props: { onSignedIn: () => void }) {
  const [key, setKey] = useState("");
  const [problem, setProblem] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setProblem("");
    // Any admin route checks the key; the tier table is small.
    const a = await call("GET", "/v1/admin/tiers", undefined, key.trim()).catch(() => null);
    setBusy(false);
    if (a?.status === 200) {
      saveKey(key.trim());
      props.onSignedIn();
    } else if (a?.status === 401 || a?.status === 403) setProblem("The admin key was refused.");
    else setProblem(a ? errorMessage(a.body) : "The edge did not answer.");
  };
  return html`<form class="signin" onSubmit=${submit}>
    <h1>Floodgate</h1>
    <label for="admin-key">Admin key</label>
    <input
      id="admin-key"
      name="admin-key"
      type="password"
      autocomplete="current-password"
      autofocus
      value=${key}
      onInput=${(e: Event) => setKey((e.target as HTMLInputElement).value)}
    />
    <button type="submit" disabled=${busy || key.trim() === ""}>Sign in</button>
    ${problem ? html`<p class="bad" role="alert" data-testid="signin-error">${problem}</p>` : null}
    <p class="muted small">The key is kept in this tab only, until it closes.</p>
  </form>`;
}

function Dashboard(props: { onSignOut: () => void }) {
  const [where, setWhere] = useState(route());
  const [history, setHistory] = useState<LiveFrame[]>([]);
  const [live, setLive] = useState<"connecting" | "live" | "reconnecting" | "refused">("connecting");
  useEffect(() => {
    const ctl = new AbortController();
    void followLive(ctl.signal, (f) => setHistory((h) => remember(h, f)), setLive);
    return () => ctl.abort();
  }, []);
  useEffect(() => {
    if (live === "refused") props.onSignOut();
  }, [live]);
  useEffect(() => {
    const onHash = () => setWhere(route());
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      // In a field, keys type; Escape leaves the field for the panel keys.
      if (t?.closest("input, textarea, select")) {
        if (e.key === "Escape") t.blur();
        return;
      }
      const n = Number(e.key);
      const panel = PANELS[n - 1];
      if (Number.isInteger(n) && panel) location.hash = panel[0];
      else if (e.key === "/") {
        e.preventDefault();
        location.hash = "jobs";
        setTimeout(() => document.getElementById("job-query")?.focus(), 0);
      }
    };
    addEventListener("hashchange", onHash);
    addEventListener("keydown", onKey);
    return () => {
      removeEventListener("hashchange", onHash);
      removeEventListener("keydown", onKey);
    };
  }, []);
  const frame = history.at(-1);
  return html`
    <header>
      <h1>Floodgate</h1>
      <nav role="tablist" aria-label="Panels">
        ${PANELS.map(
          ([p, label], i) =>
            html`<a
              role="tab"
              href=${`#${p}`}
              aria-selected=${where.panel === p}
              aria-keyshortcuts=${String(i + 1)}
              title=${`${label} (key ${i + 1})`}
              >${label}</a
            >`,
        )}
      </nav>
      <span class=${`live live-${live}`} data-testid="live" title=${frame ? new Date(frame.at).toISOString() : ""}>
        ${live === "live" ? "● live" : live}
      </span>
      <button class="link" onClick=${props.onSignOut}>Sign out</button>
    </header>
    <div class="panel">
      ${
        where.panel === "overview"
          ? html`<${Overview} history=${history} />`
          : where.panel === "agents"
            ? html`<${Agents} frame=${frame} />`
            : where.panel === "rollouts"
              ? html`<${Rollouts} />`
              : where.panel === "capacity"
                ? html`<${Capacity} />`
                : html`<${JobInspector}
                    query=${where.arg}
                    onQuery=${(q: string) => (location.hash = `jobs/${encodeURIComponent(q)}`)}
                  />`
      }
    </div>
  `;
}

function App() {
  const [signedIn, setSignedIn] = useState(savedKey() !== null);
  return signedIn
    ? html`<${Dashboard} onSignOut=${() => (forgetKey(), setSignedIn(false))} />`
    : html`<${SignIn} onSignedIn=${() => setSignedIn(true)} />`;
}

const root = document.getElementById("app")!;
root.textContent = "";
render(html`<${App} />`, root);
