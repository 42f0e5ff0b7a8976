/**
 * `GET /v1/agent/whoami`: a token checks itself (what `floodgate doctor` asks) without an agent
 * id and without binding anything; a bad, revoked or non-agent credential is 401.
 */
import { describe, expect, it } from "vitest";
import { AgentWhoami } from "../../shared/tokens.ts";
import { token } from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel } from "./helpers.ts";

describe("GET /v1/agent/whoami", () => {
  it("a live agent token answers its id, pool, models and lifetime, with no agent id", async () => {
    const model = await makeModel();
    const t = await token([model], 600);
    const r = await call("GET", "/v1/agent/whoami", { key: t.token });
    expect(r.status).toBe(200);
    const who = AgentWhoami.parse(r.body);
    expect(who).toMatchObject({ token_id: t.id, pool: "test", models: [model] });
    const lifetime = Date.parse(who.expires_at) - Date.parse(who.issued_at);
    expect(lifetime).toBe(600_000);
  });

  it("a revoked token is 401 at once", async () => {
    const t = await token([await makeModel()]);
    expect((await call("DELETE", `/v1/admin/agent-tokens/${t.id}`, { key: ADMIN })).status).toBeLessThan(300);
    const r = await call<{ error: { code: string } }>("GET", "/v1/agent/whoami", { key: t.token });
    expect(r.status).toBe(401);
    expect(r.body.error.code).toBe("unauthorized");
  });

  it("no token, a forged one, an API key or the admin key is 401", async () => {
    const { key } = await makeAccount();
    for (const credential of [undefined, "eyJhbGciOiJFZERTQSJ9.e30.AAAA", key, ADMIN]) {
      const r = await call<{ error: { code: string } }>("GET", "/v1/agent/whoami", { key: credential });
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe("unauthorized");
    }
  });
});
