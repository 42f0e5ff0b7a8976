/**
 * The job inspector: a job by id (any account's), or an account's latest jobs; its attempts with
 * their agents, versions and timings, its outputs, and its webhook deliveries where the edge
 * has them. A job not yet finished is read again every second while it is shown.
 */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import type { AdminJobList, AdminJobView } from "../../shared/api.ts";
import { call, errorMessage } from "./api.ts";
import { bytes, duration } from "./format.ts";
import { OptionalState, useOptional, Value } from "./optional.ts";
import { timeline } from "./timeline.ts";
import { When } from "./when.ts";

const FINAL = new Set(["succeeded", "failed", "cancelled", "expired"]);
const JOB_ID = /^job_[0-9a-z]{30}$/;
const ACCOUNT_ID = /^acc_[0-9a-z]{16}$/;

export function JobInspector(props: { query: string; onQuery: (q: string) => void }) {
  const [text, setText] = useState(props.query);
  const [job, setJob] = useState<AdminJobView | null>(null);
  const [list, setList] = useState<AdminJobList | null>(null);
  const [problem, setProblem] = useState("");
  const q = props.query.trim();
  useEffect(() => {
    setText(props.query);
    setJob(null);
    setList(null);
    setProblem("");
    if (!q) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      if (ACCOUNT_ID.test(q)) {
        const a = await call<AdminJobList>("GET", `/v1/admin/jobs?account=${q}&limit=50`);
        if (stopped) return;
        if (a.status === 200) setList(a.body);
        else setProblem(errorMessage(a.body));
        return;
      }
      const a = await call<AdminJobView>("GET", `/v1/admin/jobs/${encodeURIComponent(q)}`);
      if (stopped) return;
      if (a.status !== 200) return setProblem(errorMessage(a.body));
      setJob(a.body);
      if (!FINAL.has(a.body.status)) timer = setTimeout(read, 1000);
    };
    if (!JOB_ID.test(q) && !ACCOUNT_ID.test(q))
      setProblem("a job id is job_ and 30 characters; an account id is acc_ and 16");
    else void read();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [q]);
  return html`<section aria-labelledby="h-jobs">
    <h2 id="h-jobs">Job inspector</h2>
    <form
      class="find"
      onSubmit=${(e: Event) => {
        e.preventDefault();
        props.onQuery(text.trim());
      }}
    >
      <label for="job-query">Job id or account id</label>
      <input
        id="job-query"
        name="job-query"
        value=${text}
        placeholder="job_… or acc_…"
        autocomplete="off"
        spellcheck="false"
        onInput=${(e: Event) => setText((e.target as HTMLInputElement).value)}
      />
      <button type="submit">Find</button>
    </form>
    ${problem ? html`<p class="bad" role="alert">${problem}</p>` : null}
    ${list ? html`<${JobList} list=${list} onPick=${props.onQuery} />` : null}
    ${job ? html`<${JobDetail} job=${job} />` : null}
  </section>`;
}

function JobList(props: { list: AdminJobList; onPick: (id: string) => void }) {
  if (props.list.jobs.length === 0) return html`<p class="muted">The account has no jobs.</p>`;
  return html`<table>
    <thead>
      <tr>
        <th>Job</th>
        <th>Model</th>
        <th>Tier</th>
        <th>Status</th>
        <th>Created</th>
      </tr>
    </thead>
    <tbody>
      ${props.list.jobs.map(
        (j) =>
          html`<tr>
            <td>
              <a href=${`#jobs/${j.id}`} onClick=${(e: Event) => (e.preventDefault(), props.onPick(j.id))}>${j.id}</a>
            </td>
            <td>${j.model}</td>
            <td>${j.tier}</td>
            <td class=${`status-${j.status}`}>${j.status}</td>
            <td><${When} at=${j.created_at} /></td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

function JobDetail(props: { job: AdminJobView }) {
  const j = props.job;
  const t = j.timings;
  const deliveries = useOptional<{ deliveries?: unknown[] }>(`/v1/admin/jobs/${j.id}/deliveries`);
  return html`<article data-testid="job" data-status=${j.status}>
    <h3>${j.id}</h3>
    <dl class="kv">
      <dt>Status</dt>
      <dd class=${`status-${j.status}`} data-testid="job-status">${j.status} (${j.phase})</dd>
      <dt>Model</dt>
      <dd>${j.model}${j.version ? ` / ${j.version}` : ""}</dd>
      <dt>Tier</dt>
      <dd>${j.tier}</dd>
      <dt>Created</dt>
      <dd><${When} at=${j.created_at} /></dd>
      <dt>Queued for</dt>
      <dd>${duration(t.queued_s)}</dd>
      <dt>Running for</dt>
      <dd>${duration(t.running_s)}</dd>
      <dt>Finished</dt>
      <dd><${When} at=${t.finished_at} /></dd>
      ${
        j.queue
          ? html`<dt>Queue</dt>
              <dd>position ${j.queue.position}, ETA ${duration(j.queue.eta_s)} (${j.queue.reason})</dd>`
          : null
      }
      ${
        j.progress
          ? html`<dt>Progress</dt>
              <dd>${j.progress.phase}: ${j.progress.step} / ${j.progress.total} steps</dd>`
          : null
      }
      ${
        j.error
          ? html`<dt>Error</dt>
              <dd class="bad">${j.error.code}: ${j.error.message}</dd>`
          : null
      }
      ${
        j.metadata
          ? html`<dt>Metadata</dt>
              <dd><${Value} v=${j.metadata} /></dd>`
          : null
      }
    </dl>
    <h4>Events</h4>
    <ol class="events" data-testid="events">
      ${timeline(j).map((e) => html`<li><${When} at=${e.at} /> ${e.what}</li>`)}
    </ol>
    <h4>Attempts</h4>
    ${
      j.attempts.length === 0
        ? html`<p class="muted">No attempt yet.</p>`
        : html`<table data-testid="attempts">
            <thead>
              <tr>
                <th>#</th>
                <th>Agent</th>
                <th>Pool</th>
                <th>Version</th>
                <th>Epoch</th>
                <th>Started</th>
                <th>Executing</th>
                <th>Outcome</th>
              </tr>
            </thead>
            <tbody>
              ${j.attempts.map(
                (a) =>
                  html`<tr>
                    <td>${a.n}</td>
                    <td>${a.agent}</td>
                    <td>${a.pool}</td>
                    <td>${a.version ?? "—"}</td>
                    <td>${a.epoch}</td>
                    <td><${When} at=${a.started_at} /></td>
                    <td>${duration(a.executing_s)}</td>
                    <td>${a.outcome}${a.reason ? ` (${a.reason})` : ""}</td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
    <h4>Outputs</h4>
    ${
      j.outputs && j.outputs.length > 0
        ? html`<table data-testid="outputs">
            <thead>
              <tr>
                <th>Name</th>
                <th>Type</th>
                <th>Size</th>
              </tr>
            </thead>
            <tbody>
              ${j.outputs.map((o) => {
                const name = String(o.name ?? "");
                const url = typeof o.url === "string" ? o.url : null;
                return html`<tr>
                  <td>${url ? html`<a href=${url} target="_blank" rel="noopener noreferrer">${name}</a>` : name}</td>
                  <td>${String(o.content_type ?? "—")}</td>
                  <td>${bytes(typeof o.size === "number" ? o.size : undefined)}</td>
                </tr>`;
              })}
            </tbody>
          </table>`
        : html`<p class="muted">None.</p>`
    }
    <h4>Webhook deliveries</h4>
    ${
      deliveries.state === "ok"
        ? html`<${Value} v=${deliveries.body.deliveries ?? deliveries.body} />`
        : html`<${OptionalState} of=${deliveries} what="Webhook deliveries" />`
    }
  </article>`;
}
