/** The capacity panel: agents needed against connected, time to the first breach, per model. */
import { html } from "htm/preact";
import { duration } from "./format.ts";
import { OptionalState, useOptional, Value } from "./optional.ts";

interface ModelCapacity {
  agents_connected?: number;
  agents_needed?: number;
  slots_busy?: number;
  queued?: number;
  first_breach_s?: number | null;
  [k: string]: unknown;
}
interface CapacityAnswer {
  models?: Record<string, ModelCapacity>;
  [k: string]: unknown;
}

export function Capacity() {
  const cap = useOptional<CapacityAnswer>("/v1/admin/capacity", 5000);
  if (cap.state !== "ok")
    return html`<section>
      <h2>Capacity</h2>
      <${OptionalState} of=${cap} what="Capacity" />
    </section>`;
  const { models = {}, ...rest } = cap.body;
  return html`<section aria-labelledby="h-capacity">
    <h2 id="h-capacity">Capacity</h2>
    <table data-testid="capacity">
      <thead>
        <tr>
          <th>Model</th>
          <th>Agents needed</th>
          <th>Agents connected</th>
          <th>Slots busy</th>
          <th>Queued</th>
          <th>First SLO breach</th>
        </tr>
      </thead>
      <tbody>
        ${Object.entries(models).map(
          ([m, c]) =>
            html`<tr>
              <th scope="row">${m}</th>
              <td class=${(c.agents_needed ?? 0) > (c.agents_connected ?? 0) ? "bad" : ""}>
                ${c.agents_needed ?? "—"} agents
              </td>
              <td>${c.agents_connected ?? "—"} agents</td>
              <td>${c.slots_busy ?? "—"} slots</td>
              <td>${c.queued ?? "—"} jobs</td>
              <td>
                ${c.first_breach_s === null || c.first_breach_s === undefined ? "none foreseen" : `in ${duration(c.first_breach_s)}`}
              </td>
            </tr>`,
        )}
      </tbody>
    </table>
    ${
      Object.keys(rest).length > 0
        ? html`<h3>Provisioning</h3>
            <${Value} v=${rest} />`
        : null
    }
  </section>`;
}
