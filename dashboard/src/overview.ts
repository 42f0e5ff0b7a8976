/**
 * The overview and agents panels: what the live frames say, per model and tier and per agent.
 */
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { call, errorMessage } from "./api.ts";
import type { LiveFrame, QueueStats } from "../../shared/api.ts";
import { WaitChart } from "./chart.ts";
import { duration, megabytes, percent, rate } from "./format.ts";
import { modelRates } from "./rates.ts";
import { When } from "./when.ts";

/** A model and tier's queues summed over shards: depths and running add, waits take the largest. */
function byTier(queues: readonly QueueStats[]): QueueStats[] {
  const rows = new Map<string, QueueStats>();
  for (const q of queues) {
    const k = `${q.model}\n${q.tier}`;
    const r = rows.get(k);
    if (!r) rows.set(k, { ...q });
    else {
      r.depth += q.depth;
      r.running += q.running;
      r.oldest_wait_s = Math.max(r.oldest_wait_s, q.oldest_wait_s);
      r.max_wait_over_slo = Math.max(r.max_wait_over_slo, q.max_wait_over_slo);
      r.drain_per_s += q.drain_per_s;
    }
  }
  return [...rows.values()].sort((a, b) => a.model.localeCompare(b.model) || a.tier.localeCompare(b.tier));
}

export function Overview(props: { history: readonly LiveFrame[] }) {
  const frame = props.history.at(-1);
  if (!frame) return html`<p class="muted">Waiting for the first frame…</p>`;
  const rows = byTier(frame.queues);
  const models = [...new Set(rows.map((r) => r.model))];
  return html`
    <section aria-labelledby="h-models">
      <h2 id="h-models">Models</h2>
      <table data-testid="models">
        <thead>
          <tr>
            <th>Model</th>
            <th>Jobs finished</th>
            <th>Failure rate</th>
            <th>Admission refusals</th>
            <th>Agents</th>
          </tr>
        </thead>
        <tbody>
          ${models.map((m) => {
            const r = modelRates(props.history, m);
            const agents = frame.agents.filter((a) => a.models.includes(m)).length;
            return html`<tr data-model=${m}>
              <th scope="row">${m}</th>
              <td>${rate(r.jobsPerS, "jobs")}</td>
              <td>${percent(r.failureRate)}</td>
              <td>${r.refusedPerMin === null ? "—" : `${r.refusedPerMin.toFixed(1)} /min`}</td>
              <td>${agents} connected</td>
            </tr>`;
          })}
        </tbody>
      </table>
      <p class="muted small">Rates over the last minute the tab has seen.</p>
    </section>
    <section aria-labelledby="h-tiers">
      <h2 id="h-tiers">Queues per model and tier</h2>
      <table data-testid="tiers">
        <thead>
          <tr>
            <th>Model</th>
            <th>Tier</th>
            <th>Depth</th>
            <th>Running</th>
            <th>Oldest wait</th>
            <th>Wait / SLO</th>
            <th>Drain</th>
          </tr>
        </thead>
        <tbody>
          ${rows.map(
            (q) =>
              html`<tr data-model=${q.model} data-tier=${q.tier}>
                <td>${q.model}</td>
                <td>${q.tier}</td>
                <td>${q.depth} jobs</td>
                <td>${q.running} jobs</td>
                <td>${duration(q.oldest_wait_s)}</td>
                <td class=${q.max_wait_over_slo >= 1 ? "bad" : q.max_wait_over_slo >= 0.7 ? "warn" : ""}>
                  ${q.max_wait_over_slo.toFixed(2)} ×
                </td>
                <td>${rate(q.drain_per_s, "jobs")}</td>
              </tr>`,
          )}
        </tbody>
      </table>
      <h3>Wait / SLO since this tab opened (up to 1 h)</h3>
      <${WaitChart} history=${props.history} lines=${rows.map((q) => ({ model: q.model, tier: q.tier }))} />
    </section>
  `;
}

export function Agents(props: { frame: LiveFrame | undefined }) {
  const agents = props.frame?.agents ?? [];
  const [note, setNote] = useState("");
  const drain = async (id: string, name: string) => {
    if (!confirm(`Drain ${name}? It finishes its jobs and takes no new ones.`)) return;
    const a = await call("POST", `/v1/admin/agents/${id}/drain`);
    setNote(a.status === 202 ? `${name} is draining` : errorMessage(a.body));
  };
  const reclaim = async (id: string, name: string) => {
    if (!confirm(`Reclaim ${name}? It is disconnected now and its jobs go back to their queues.`)) return;
    const a = await call<{ released: number }>("POST", `/v1/admin/agents/${id}/reclaim`);
    setNote(a.status === 200 ? `${name} reclaimed: ${a.body.released} jobs sent back` : errorMessage(a.body));
  };
  if (!props.frame) return html`<p class="muted">Waiting for the first frame…</p>`;
  return html`
    <section aria-labelledby="h-agents">
      <h2 id="h-agents">Agents (${agents.length} connected)</h2>
      ${note ? html`<p role="status">${note}</p>` : null}
      ${
        agents.length === 0
          ? html`<p class="muted" data-testid="no-agents">No agent is connected.</p>`
          : html`<table data-testid="agents">
              <thead>
                <tr>
                  <th>Agent</th>
                  <th>Pool</th>
                  <th>Models</th>
                  <th>Versions</th>
                  <th>Slots busy</th>
                  <th>GPUs</th>
                  <th>Last heartbeat</th>
                  <th>Connected</th>
                  <th></th>
                </tr>
              </thead>
              <tbody>
                ${agents.map(
                  (a) =>
                    html`<tr data-agent=${a.agent_id}>
                      <td title=${a.agent_id}>${a.name}</td>
                      <td>${a.pool}</td>
                      <td>${a.models.join(", ")}</td>
                      <td>${a.versions.map((v) => `${v.model}/${v.version}`).join(", ") || "—"}</td>
                      <td>${a.running ?? 0} / ${a.slots} slots</td>
                      <td>
                        ${
                          a.gpus.length === 0
                            ? "none reported"
                            : a.gpus.map(
                                (g) =>
                                  html`<div class="gpu">
                                    ${g.name ?? "GPU"}: ${g.util_pct === undefined ? "—" : `${g.util_pct} %`} util,
                                    ${megabytes(g.vram_used_mb)} / ${megabytes(g.vram_total_mb)},
                                    ${g.temp_c === undefined ? "—" : `${g.temp_c} °C`}
                                  </div>`,
                              )
                        }
                      </td>
                      <td><${When} at=${a.last_heartbeat} now=${props.frame?.at} /></td>
                      <td><${When} at=${a.connected_at} now=${props.frame?.at} /></td>
                      <td>
                        <button onClick=${() => drain(a.agent_id, a.name)}>Drain</button>
                        <button onClick=${() => reclaim(a.agent_id, a.name)}>Reclaim</button>
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
    </section>
  `;
}
