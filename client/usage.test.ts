import { afterEach, describe, expect, it } from "vitest";
import { createAdminClient } from "./admin.ts";
import { createClient } from "./client.ts";
import { MalformedAnswerError } from "./errors.ts";
import { json, startServer, type TestServer } from "../test/support/http-server.ts";
import { summarizeUsage, type UsageAnswer } from "../shared/usage.ts";

const ANSWER: UsageAnswer = {
  account: "acc_0123456789abcdef",
  from: "2026-01-01T00:00:00.000Z",
  to: "2026-01-02T00:00:00.000Z",
  group_by: "day",
  ...summarizeUsage([], "day"),
};

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("usage in the SDK", () => {
  it("usage() asks for the caller's usage over the span and grouping given, Dates as ISO 8601", async () => {
    server = await startServer((_req, res) => json(res, 200, ANSWER));
    const fg = createClient({ url: server.url, apiKey: "fgk_a.b.c" });
    expect(
      await fg.usage({ from: new Date("2026-01-01T00:00:00Z"), to: "2026-01-02T00:00:00Z", groupBy: "day" }),
    ).toEqual(ANSWER);
    expect(server.requests[0]).toMatchObject({
      method: "GET",
      path: "/v1/usage?from=2026-01-01T00%3A00%3A00.000Z&to=2026-01-02T00%3A00%3A00Z&group_by=day",
    });
  });

  it("the admin client's usage(account) asks the admin route for that account", async () => {
    server = await startServer((_req, res) => json(res, 200, ANSWER));
    const admin = createAdminClient({ url: server.url, adminKey: "fga_x" });
    await admin.usage("acc_0123456789abcdef");
    expect(server.requests[0]!.path).toBe("/v1/admin/usage?account=acc_0123456789abcdef");
  });

  it("an answer that is not usage is refused as malformed", async () => {
    server = await startServer((_req, res) => json(res, 200, { usage: "lots" }));
    const fg = createClient({ url: server.url, apiKey: "fgk_a.b.c" });
    expect(await fg.usage().catch((e: unknown) => e)).toBeInstanceOf(MalformedAnswerError);
  });
});
