/**
 * The rollouts panel: per model the desired versions against what agents report, the canary's
 * figures and reverts; the history; undo a model's last entry or revert its canary.
 */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import type { RolloutHistory, RolloutStatus } from "../../shared/rollouts.ts";
import { call, errorMessage } from "./api.ts";
import { When } from "./when.ts";

export function Rollouts() {
  const [status, setStatus] = useState<RolloutStatus | null>(null);
  const [history, setHistory] = useState<RolloutHistory | null>(null);
  const [note, setNote] = useState<string>("");
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let stopped = false;
    const read = async () => {
      const [s, h] = await Promise.all([
        call<RolloutStatus>("GET", "/v1/admin/rollouts/status"),
        call<RolloutHistory>("GET", "/v1/admin/rollouts?limit=20"),
      ]);
      if (stopped) return;
      if (s.status === 200) setStatus(s.body);
      else setNote(errorMessage(s.body));
      if (h.status === 200) setHistory(h.body);
    };
    void read();
    const timer = setInterval(read, 5000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [tick]);
  const act = async (what: "undo" | "revert", model: string) => {
    const verb = what === "undo" ? "Undo the last rollout of" : "Revert the canary of";
    if (!confirm(`${verb} ${model}?`)) return;
    const a = await call("POST", `/v1/admin/rollouts/${what}`, { model });
    setNote(a.status < 300 ? `${what} of ${model} done` : errorMessage(a.body));
    setTick((t) => t + 1);
  };
  const models = Object.entries(status?.models ?? {});
  return html`<section aria-labelledby="h-rollouts">
    <h2 id="h-rollouts">Rollouts</h2>
    ${note ? html`<p role="status">${note}</p>` : null}
    ${
      status === null
        ? html`<p class="muted">Loading…</p>`
        : models.length === 0
          ? html`<p class="muted" data-testid="no-rollouts">No model has a rollout.</p>`
          : html`<table data-testid="rollouts">
              <thead>
                <tr>
                  <th>Model</th>
                  <th>Stable</th>
                  <th>Canary</th>
                  <th>Agents per version</th>
                  <th>Figures</th>
                  <th>Since</th>
                  <th></th>
                </tr>
              </thead>
              <tbody>
                ${models.map(
                  ([m, s]) =>
                    html`<tr>
                      <th scope="row">${m}</th>
                      <td>${s.stable.version}</td>
                      <td>
                        ${s.canary ? `${s.canary.version} at ${s.canary.percent} % (revert past ${s.canary.max_failure_pct} % failed, min ${s.canary.min_jobs} jobs)` : "—"}
                      </td>
                      <td>
                        ${Object.entries(s.agents).map(
                          ([v, c]) =>
                            html`<div>${v}: ${c.serving} serving, ${c.loading} loading, ${c.failed} failed</div>`,
                        )}
                      </td>
                      <td>
                        ${Object.entries(s.window).map(
                          ([v, w]) =>
                            html`<div>${v}: ${w.jobs} jobs, ${w.failed} failed (${w.failure_pct.toFixed(1)} %)</div>`,
                        )}
                      </td>
                      <td><${When} at=${s.since} /></td>
                      <td>
                        <button onClick=${() => act("undo", m)}>Undo</button>
                        ${s.canary ? html`<button onClick=${() => act("revert", m)}>Revert canary</button>` : null}
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
    }
    <h3>Reverts</h3>
    ${
      models.every(([, s]) => s.reverts.length === 0)
        ? html`<p class="muted">No canary was reverted.</p>`
        : html`<ul>
            ${models.flatMap(([m, s]) =>
              s.reverts.map(
                (r) =>
                  html`<li>
                    ${m} ${r.version}: ${r.reason}, ${r.failed} of ${r.jobs} jobs failed (${r.failure_pct.toFixed(1)} %)
                    <${When} at=${r.at} />
                  </li>`,
              ),
            )}
          </ul>`
    }
    <h3>History</h3>
    ${
      history === null || history.rollouts.length === 0
        ? html`<p class="muted">No rollout was applied.</p>`
        : html`<table>
            <thead>
              <tr>
                <th>#</th>
                <th>Kind</th>
                <th>Models</th>
                <th>By</th>
                <th>Applied</th>
              </tr>
            </thead>
            <tbody>
              ${history.rollouts.map(
                (e) =>
                  html`<tr>
                    <td>${e.id}</td>
                    <td>${e.kind}</td>
                    <td>
                      ${Object.entries(e.models).map(
                        ([m, r]) =>
                          html`<div>
                            ${m}: ${r.version}${r.canary ? ` + canary ${r.canary.version} ${r.canary.percent} %` : ""}
                          </div>`,
                      )}
                    </td>
                    <td>${e.by}</td>
                    <td><${When} at=${e.applied_at} /></td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
  </section>`;
}
