import { describe, expect, it } from "vitest";
import { newWebhookSecret, signWebhook } from "../shared/webhook-signature.ts";
import { verifyWebhook } from "./webhooks.ts";

describe("verifyWebhook", () => {
  const body = JSON.stringify({ type: "job.succeeded", timestamp: "2026-01-01T00:00:00Z", data: { id: "job_1" } });

  it("answers the payload of a delivery signed with the secret, from plain or Fetch headers", async () => {
    const secret = newWebhookSecret();
    const h = await signWebhook([secret], "msg_1", Date.now() / 1000, body);
    expect(verifyWebhook(body, { ...h }, secret)).toEqual(JSON.parse(body));
    expect(verifyWebhook(new TextEncoder().encode(body), new Headers({ ...h }), secret).type).toBe("job.succeeded");
  });

  it("while a rotation overlaps, either secret verifies, and a list of secrets is tried in turn", async () => {
    const [old, next] = [newWebhookSecret(), newWebhookSecret()];
    const h = await signWebhook([next, old], "msg_2", Date.now() / 1000, body);
    expect(verifyWebhook(body, { ...h }, old).type).toBe("job.succeeded");
    expect(verifyWebhook(body, { ...h }, next).type).toBe("job.succeeded");
    const onlyNew = await signWebhook([next], "msg_3", Date.now() / 1000, body);
    expect(verifyWebhook(body, { ...onlyNew }, [old, next]).type).toBe("job.succeeded");
  });

  it("a changed body, another secret or a stale timestamp throws", async () => {
    const secret = newWebhookSecret();
    const h = await signWebhook([secret], "msg_4", Date.now() / 1000, body);
    expect(() => verifyWebhook(body.replace("job_1", "job_2"), { ...h }, secret)).toThrow(
      "No matching signature found",
    );
    expect(() => verifyWebhook(body, { ...h }, newWebhookSecret())).toThrow("No matching signature found");
    const stale = await signWebhook([secret], "msg_5", Date.now() / 1000 - 3600, body);
    expect(() => verifyWebhook(body, { ...stale }, secret)).toThrow("Message timestamp too old");
  });
});
