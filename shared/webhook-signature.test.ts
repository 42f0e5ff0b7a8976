import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { newWebhookSecret, signWebhook } from "./webhook-signature.ts";

describe("webhook signatures", () => {
  it("verify with the Standard Webhooks reference library", async () => {
    const secret = newWebhookSecret();
    const body = JSON.stringify({ type: "job.succeeded", data: { id: "job_1" } });
    const headers = await signWebhook([secret], "msg_1", Date.now() / 1000, body);
    expect(new Webhook(secret).verify(body, { ...headers })).toEqual(JSON.parse(body));
  });

  it("while a rotated secret overlaps, either secret verifies", async () => {
    const [old, next] = [newWebhookSecret(), newWebhookSecret()];
    const body = "{}";
    const headers = await signWebhook([next, old], "msg_2", Date.now() / 1000, body);
    expect(headers["webhook-signature"].split(" ")).toHaveLength(2);
    expect(new Webhook(old).verify(body, { ...headers })).toEqual({});
    expect(new Webhook(next).verify(body, { ...headers })).toEqual({});
  });

  it("a changed body, a stale timestamp or another secret is refused", async () => {
    const secret = newWebhookSecret();
    const headers = await signWebhook([secret], "msg_3", Date.now() / 1000, '{"a":1}');
    expect(() => new Webhook(secret).verify('{"a":2}', { ...headers })).toThrow("No matching signature found");
    expect(() => new Webhook(newWebhookSecret()).verify('{"a":1}', { ...headers })).toThrow(
      "No matching signature found",
    );
    const stale = await signWebhook([secret], "msg_4", Date.now() / 1000 - 3600, '{"a":1}');
    expect(() => new Webhook(secret).verify('{"a":1}', { ...stale })).toThrow("Message timestamp too old");
  });
});
