import { describe, expect, it } from "vitest";
import { SECRET_OVERLAP_MS, WEBHOOK_EVENTS } from "../../shared/webhooks.ts";
import { nodeSql } from "../sql/node.ts";
import { migrate } from "../sql/sql.ts";
import { authenticate } from "./logic.ts";
import { AccountStore, MIGRATIONS } from "./store.ts";
import { addWebhook, disableWebhook, hookTarget, JOB_SECRET_ID, rotateSecret } from "./webhooks.ts";
import type { Failure } from "../../shared/errors.ts";
import { hashKey } from "../../shared/keys.ts";

const T0 = Date.UTC(2026, 0, 1);

function store(): AccountStore {
  const sql = nodeSql();
  migrate(sql, MIGRATIONS);
  const s = new AccountStore(sql);
  s.createAccount({ id: "acc_1", name: "Ada", tier: "api", rate_limit: null, created_at: T0 });
  return s;
}

function created<T extends object>(x: T | Failure): T {
  if ("ok" in x && x.ok === false) throw new Error(x.message);
  return x as T;
}

describe("an account's webhooks", () => {
  it("an endpoint gets a whsec_ secret once; it wants every event unless it names some", () => {
    const s = store();
    const a = created(addWebhook(s, "https://a.example.com/", undefined, T0));
    expect(a.secret).toMatch(/^whsec_/);
    expect(a.id).toMatch(/^wh_[0-9a-z]{16}$/);
    expect(a.events).toEqual([...WEBHOOK_EVENTS]);
    const b = created(addWebhook(s, "https://b.example.com/", ["job.succeeded"], T0));
    expect(b.events).toEqual(["job.succeeded"]);
    expect(hookTarget(s, a.id, T0)).toEqual({ url: "https://a.example.com/", secrets: [a.secret], disabled: false });
  });

  it("authentication carries the live endpoints and whether jobs' own webhooks can be signed", async () => {
    const s = store();
    s.addKey("key_1", await hashKey("k"), T0);
    const a = created(addWebhook(s, "https://a.example.com/", ["job.failed"], T0));
    const b = created(addWebhook(s, "https://b.example.com/", undefined, T0));
    disableWebhook(s, b.id, "gone", T0);
    expect(authenticate(s, "key_1", await hashKey("k"))).toMatchObject({
      webhooks: [{ id: a.id, events: ["job.failed"] }],
      job_webhooks: false,
    });
    rotateSecret(s, JOB_SECRET_ID, T0);
    expect(authenticate(s, "key_1", await hashKey("k"))).toMatchObject({ job_webhooks: true });
  });

  it("a rotated secret signs beside the new one for 24 h, then alone the new one does", () => {
    const s = store();
    const a = created(addWebhook(s, "https://a.example.com/", undefined, T0));
    const r = rotateSecret(s, a.id, T0 + 1);
    if ("ok" in r) throw new Error("rotate failed");
    expect(hookTarget(s, a.id, T0 + 2)?.secrets).toEqual([r.secret, a.secret]);
    expect(hookTarget(s, a.id, T0 + 1 + SECRET_OVERLAP_MS)?.secrets).toEqual([r.secret]);
  });

  it("a disabled endpoint says when and why, and rotating its secret enables it again", () => {
    const s = store();
    const a = created(addWebhook(s, "https://a.example.com/", undefined, T0));
    expect(disableWebhook(s, a.id, "the endpoint answered 410 Gone", T0 + 5)).toBe(true);
    expect(disableWebhook(s, a.id, "again", T0 + 6)).toBe(false);
    expect(hookTarget(s, a.id, T0 + 7)?.disabled).toBe(true);
    expect(s.webhook(a.id)).toMatchObject({ disabled_at: T0 + 5, disabled_reason: "the endpoint answered 410 Gone" });
    rotateSecret(s, a.id, T0 + 8);
    expect(hookTarget(s, a.id, T0 + 9)?.disabled).toBe(false);
  });

  it("an unknown endpoint cannot be rotated, and the job secret is made by its first rotation", () => {
    const s = store();
    expect(rotateSecret(s, "wh_0000000000000000", T0)).toMatchObject({ ok: false, code: "not_found" });
    const j = rotateSecret(s, JOB_SECRET_ID, T0);
    if ("ok" in j) throw new Error("failed");
    expect(hookTarget(s, JOB_SECRET_ID, T0)).toEqual({ url: null, secrets: [j.secret], disabled: false });
    expect(s.webhooks()).toEqual([]);
  });
});
