import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { json, startServer, type TestServer } from "../test/support/http-server.ts";
import type { WebhookView } from "../shared/webhooks.ts";
import { runCommand, type Io } from "./client-commands.ts";
import { deliveryTable, webhooks, webhookTable } from "./webhooks.ts";

const NOW = Date.parse("2026-01-01T00:01:00.000Z");
let server: TestServer | undefined;
const dirs: string[] = [];

afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function io(url: string): Io & { out: string[]; err: string[] } {
  const root = mkdtempSync(join(tmpdir(), "fg-cli-wh-"));
  dirs.push(root);
  mkdirSync(join(root, ".floodgate"));
  writeFileSync(
    join(root, ".floodgate", "local.json"),
    JSON.stringify({ url, admin_key: "fga_x", api_key: "fgk_x", agent_token: "t" }),
  );
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    stdout: (s) => void out.push(s),
    stderr: (s) => void err.push(s),
    tty: false,
    columns: 100,
    interactive: false,
    readKey: () => Promise.resolve("d"),
    onInterrupt: () => () => undefined,
    env: {},
    cwd: root,
    now: () => NOW,
    fetch: (input, init) => globalThis.fetch(input, init),
  };
}

const view: WebhookView = {
  id: "wh_0123456789abcdef",
  url: "https://hooks.example.com/fg",
  events: ["job.succeeded"],
  created_at: "2026-01-01T00:00:00.000Z",
  disabled_at: null,
  disabled_reason: null,
};

describe("floodgate webhooks", () => {
  it("add sends the URL and events and prints the secret once", async () => {
    server = await startServer((_req, res) => json(res, 201, { ...view, secret: "whsec_abc" }));
    const t = io(server.url);
    expect(await runCommand("webhooks", webhooks, ["add", view.url, "--events", "job.succeeded"], t)).toBe(0);
    expect(server.requests[0]).toMatchObject({ method: "POST", path: "/v1/webhooks" });
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ url: view.url, events: ["job.succeeded"] });
    expect(t.out.join("")).toContain("secret whsec_abc");
  });

  it("an unknown event is a usage error before any request", async () => {
    server = await startServer((_req, res) => json(res, 500, {}));
    const t = io(server.url);
    expect(await runCommand("webhooks", webhooks, ["add", view.url, "--events", "job.exploded"], t)).toBe(2);
    expect(server.requests).toHaveLength(0);
  });

  it("list prints each endpoint, and a disabled one with its reason", () => {
    const text = webhookTable(
      [view, { ...view, id: "wh_1", disabled_at: view.created_at, disabled_reason: "410" }],
      NOW,
    );
    expect(text).toContain("wh_0123456789abcdef");
    expect(text).toMatch(/disabled 1 min 00 s ago: 410/);
  });

  it("deliveries prints every attempt with its status under its message", () => {
    const text = deliveryTable(
      [
        {
          id: "msg_1",
          type: "job.succeeded",
          endpoint: "wh_1",
          url: "",
          state: "delivered",
          created_at: view.created_at,
          next_attempt_at: null,
          attempts: [
            { at: view.created_at, status: 500, error: "boom", duration_ms: 12 },
            { at: view.created_at, status: null, error: "no answer within 15 s", duration_ms: 15000 },
            { at: view.created_at, status: 200, error: null, duration_ms: 8 },
          ],
        },
      ],
      NOW,
    );
    expect(text).toContain("msg_1");
    expect(text).toContain("500");
    expect(text).toContain("no answer");
    expect(text.split("\n").filter((l) => l.includes("attempt"))).toHaveLength(3);
  });

  it("redeliver names the event it asks for", async () => {
    server = await startServer((_req, res) => json(res, 200, { redelivered: 1 }));
    const t = io(server.url);
    expect(await runCommand("webhooks", webhooks, ["redeliver", "job_x", "--event", "job.failed"], t)).toBe(0);
    expect(server.requests[0]).toMatchObject({ method: "POST", path: "/v1/jobs/job_x/redeliver" });
    expect(JSON.parse(server.requests[0]!.body)).toEqual({ event: "job.failed" });
  });
});
