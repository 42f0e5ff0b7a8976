/**
 * Agent tokens, attacked: every class of bad token is refused by `verifyAgentToken` and, over
 * HTTP, with 401 before any WebSocket opens (and on the upload route, which shares the check).
 *
 * Bad tokens are crafted around the jti of a live, registered token, so the only reason any of
 * them can be refused is its defect, never an unknown jti; a control token built by the same
 * signer with no defect connects. Revocation of a live socket (closed with 4401, leases fenced)
 * is proven in agent.test.ts ("revoking a token closes its live agents with 4401 and fences
 * their leases"); the rate limit and key hashing in admin.test.ts and isolation.test.ts.
 */
import { env } from "cloudflare:workers";
import * as fc from "fast-check";
import { CompactSign, decodeJwt, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { verifyAgentToken } from "../../edge/tokens.ts";
import { AGENT_TOKEN_TYPE } from "../../shared/tokens.ts";
import { actor, type RegistryActor } from "../../mesh/index.ts";
import { CLOSE, type LeaseGrant } from "../../shared/wire.ts";
import {
  agentId,
  connect,
  connectRequest,
  hello,
  leaseOne,
  token,
  welcomed,
  within,
  heartbeat,
} from "./agent-helpers.ts";
import { ADMIN, call, makeAccount, makeModel, submit } from "./helpers.ts";

/** Runs per property; `npm run fuzz` raises it (test/fuzz.config.ts passes it into workerd). */
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);

type Fields = Record<string, unknown>;
type SigningKey = CryptoKey | Uint8Array;

const enc = new TextEncoder();
const keySet = JSON.parse(env.AGENT_SIGNING_KEYS) as { active: string; keys: (JWK & { kid: string })[] };

function b64url(data: string | Uint8Array): string {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

function fromB64url(s: string): Uint8Array {
  const bin = atob(s.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** `base` with `patch` applied; an `undefined` value removes the field. */
function merge(base: Fields, patch: Fields): Fields {
  const out: Fields = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

async function privateKey(kid: string): Promise<CryptoKey> {
  const jwk = keySet.keys.find((k) => k.kid === kid);
  if (!jwk) throw new Error(`no key ${kid} in the test key set`);
  return (await importJWK(jwk, "EdDSA")) as CryptoKey;
}

/** Signs any header and payload as a compact JWS (no claim checks: that is the point). */
async function sign(header: Fields, payload: Fields, key: SigningKey): Promise<string> {
  const alg = typeof header.alg === "string" ? header.alg : "EdDSA";
  const crit = Array.isArray(header.crit) ? Object.fromEntries(header.crit.map((c) => [String(c), true])) : undefined;
  return await new CompactSign(enc.encode(JSON.stringify(payload)))
    .setProtectedHeader({ ...header, alg })
    .sign(key, crit ? { crit } : undefined);
}

/** An unsigned token (`alg: none` style): header and payload with an empty or given signature. */
function unsigned(header: Fields, payload: Fields, signature = ""): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${signature}`;
}

/** What a token gets: from the verifier, at connect, and on the upload route (which shares the check). */
interface Outcome {
  token: string;
  verified: boolean;
  connect: number;
  socket: boolean;
  code: string | undefined;
  upload: number;
}

async function outcome(tok: string): Promise<Outcome> {
  const verified = (await verifyAgentToken(env, tok)) !== undefined;
  const res = await connectRequest(tok);
  const socket = res.webSocket !== null;
  if (res.webSocket) {
    res.webSocket.accept();
    res.webSocket.close(1000, "done");
  }
  const code = socket ? undefined : ((await res.json()) as { error?: { code: string } }).error?.code;
  const upload = await call("POST", "/v1/agent/uploads", {
    body: { job_id: `job_${"0".repeat(30)}`, epoch: 1, name: "x.bin", content_type: "application/octet-stream" },
    headers: { authorization: `Bearer ${tok}`, "x-floodgate-agent": agentId() },
  });
  return { token: tok.slice(0, 80), verified, connect: res.status, socket, code, upload: upload.status };
}

/** What every bad token must get: no claims, 401 and no socket at connect, 401 on uploads. */
function refused(tok: string): Outcome {
  return { token: tok.slice(0, 80), verified: false, connect: 401, socket: false, code: "unauthorized", upload: 401 };
}

async function outcomes(tokens: string[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const t of tokens) out.push(await outcome(t));
  return out;
}

interface Ctx {
  /** Claims of a live, registered token (its jti is known and not revoked). */
  claims: Fields;
  /** The live token as minted. */
  live: string;
  header: Fields;
  k2: CryptoKey;
  k1: CryptoKey;
}

let ctx: Ctx;

/** Claims as the edge mints them, around the live jti, valid now. */
function goodClaims(): Fields {
  const now = Math.floor(Date.now() / 1000);
  return { ...ctx.claims, iat: now, nbf: now, exp: now + 600 };
}

/** A token with the given header and claim changes, signed by the active key. */
async function craft(headerPatch: Fields, claimPatch: Fields, key: SigningKey = ctx.k2): Promise<string> {
  return await sign(merge(ctx.header, headerPatch), merge(goodClaims(), claimPatch), key);
}

interface BadClass {
  name: string;
  tokens: () => Promise<string[]>;
}

/** Each class of bad token the edge must refuse at the signature and claims check. */
const BAD_CLASSES: BadClass[] = [
  {
    name: "alg none (unsigned)",
    tokens: async () => {
      const claims = goodClaims();
      const sig = ctx.live.split(".")[2] ?? "";
      return [
        unsigned({ alg: "none", typ: AGENT_TOKEN_TYPE }, claims),
        unsigned({ alg: "none", kid: "k-test-2", typ: AGENT_TOKEN_TYPE }, claims),
        unsigned({ alg: "None", kid: "k-test-2", typ: AGENT_TOKEN_TYPE }, claims),
        unsigned({ alg: "NONE", kid: "k-test-2", typ: AGENT_TOKEN_TYPE }, claims),
        unsigned({ alg: "none", kid: "k-test-2", typ: AGENT_TOKEN_TYPE }, claims, sig),
        unsigned({ alg: "EdDSA", kid: "k-test-2", typ: AGENT_TOKEN_TYPE }, claims),
      ];
    },
  },
  {
    name: "HS256/384/512 signed with the public key as the HMAC secret (algorithm confusion)",
    tokens: async () => {
      const jwk = keySet.keys.find((k) => k.kid === "k-test-2") as JWK;
      const { d: _d, ...pub } = jwk;
      const secrets = [fromB64url(jwk.x ?? ""), enc.encode(JSON.stringify(pub)), enc.encode(jwk.x ?? "")];
      const out: string[] = [];
      for (const alg of ["HS256", "HS384", "HS512"]) for (const s of secrets) out.push(await craft({ alg }, {}, s));
      return out;
    },
  },
  {
    name: "HS256 signed with a guessed secret (including the edge's own HMAC and admin secrets)",
    tokens: async () => {
      const guesses = ["secret", "floodgate", "k-test-2", env.FILE_SIGNING_KEY ?? "x", env.ADMIN_KEY ?? "x"];
      return await Promise.all(guesses.map((g) => craft({ alg: "HS256" }, {}, enc.encode(g))));
    },
  },
  {
    name: "RS256 and ES256 signed by an attacker's key pair",
    tokens: async () => {
      const rs = await generateKeyPair("RS256");
      const es = await generateKeyPair("ES256");
      return [await craft({ alg: "RS256" }, {}, rs.privateKey), await craft({ alg: "ES256" }, {}, es.privateKey)];
    },
  },
  {
    name: "a valid token re-signed by an Ed25519 key not in the set",
    tokens: async () => {
      const rogue = await generateKeyPair("EdDSA");
      return [
        await craft({}, {}, rogue.privateKey),
        await craft({ kid: "k-test-1" }, {}, rogue.privateKey),
        await craft({ kid: undefined }, {}, rogue.privateKey),
      ];
    },
  },
  {
    name: "the attacker's key embedded in the header (jwk, jku, x5u)",
    tokens: async () => {
      const rogue = await generateKeyPair("EdDSA", { extractable: true });
      const jwk = await exportJWK(rogue.publicKey);
      return [
        await craft({ jwk }, {}, rogue.privateKey),
        await craft({ jwk, kid: undefined }, {}, rogue.privateKey),
        await craft({ jku: "https://attacker.example/jwks.json" }, {}, rogue.privateKey),
        await craft({ x5u: "https://attacker.example/cert.pem" }, {}, rogue.privateKey),
      ];
    },
  },
  {
    name: "unknown kid",
    tokens: async () => [await craft({ kid: "k-test-3" }, {}), await craft({ kid: "k-test-0" }, {})],
  },
  {
    name: "injected kid (path traversal, SQL, prototype keys, look-alikes)",
    tokens: async () => {
      const kids = [
        "../../../../etc/passwd",
        "k-test-2/../k-test-1",
        "' OR '1'='1",
        "k-test-2' --",
        '"; DROP TABLE tokens; --',
        "__proto__",
        "constructor",
        "toString",
        "k-test-2:private",
        "k-test-2 ",
        " k-test-2",
        "K-TEST-2",
        "k-test-2\u0000",
        "k\u2010test\u20102",
        "",
      ];
      return await Promise.all(kids.map((kid) => craft({ kid }, {})));
    },
  },
  {
    name: "missing kid, or a kid that is not a string",
    tokens: async () => [
      await craft({ kid: undefined }, {}),
      await craft({ kid: 2 }, {}),
      await craft({ kid: ["k-test-2"] }, {}),
      await craft({ kid: { kid: "k-test-2" } }, {}),
      await craft({ kid: null }, {}),
    ],
  },
  {
    name: "signed by one key of the set under the other's kid",
    tokens: async () => [await craft({ kid: "k-test-2" }, {}, ctx.k1), await craft({ kid: "k-test-1" }, {}, ctx.k2)],
  },
  {
    name: "expired",
    tokens: async () => {
      const now = Math.floor(Date.now() / 1000);
      return [
        await craft({}, { exp: now - 1, nbf: now - 600, iat: now - 600 }),
        await craft({}, { exp: now - 86_400, nbf: now - 90_000, iat: now - 90_000 }),
        await craft({}, { exp: 0, nbf: 0, iat: 0 }),
      ];
    },
  },
  {
    name: "not yet valid (nbf in the future)",
    tokens: async () => {
      const now = Math.floor(Date.now() / 1000);
      return [await craft({}, { nbf: now + 60 }), await craft({}, { nbf: now + 86_400, exp: now + 90_000 })];
    },
  },
  {
    name: "wrong or missing aud",
    tokens: async () =>
      await Promise.all(
        ["someone.else", "Floodgate.agent", "floodgate.agent ", "floodgate", ["someone.else"], [], undefined].map(
          (aud) => craft({}, { aud }),
        ),
      ),
  },
  {
    name: "wrong or missing iss",
    tokens: async () =>
      await Promise.all(["floodgate2", "Floodgate", "", ["floodgate"], undefined].map((iss) => craft({}, { iss }))),
  },
  {
    name: "wrong or missing typ",
    tokens: async () =>
      await Promise.all(["JWT", "at+jwt", "floodgate-user+jwt", "", undefined].map((typ) => craft({ typ }, {}))),
  },
  {
    name: "a required claim missing (exp, nbf, iat, jti, sub, pool, models)",
    tokens: async () =>
      await Promise.all(
        ["exp", "nbf", "iat", "jti", "sub", "pool", "models"].map((claim) => craft({}, { [claim]: undefined })),
      ),
  },
  {
    name: "claims of the wrong type",
    tokens: async () => {
      const now = Math.floor(Date.now() / 1000);
      const patches: Fields[] = [
        { exp: String(now + 600) },
        { exp: now + 600.5 },
        { nbf: String(now) },
        { iat: String(now) },
        { iat: null },
        { jti: 42 },
        { jti: "tok_short" },
        { jti: ["tok_0123456789abcdef"] },
        { pool: 7 },
        { pool: "" },
        { pool: "p".repeat(65) },
        { models: "demo" },
        { models: [] },
        { models: [1] },
        { models: { 0: "demo" } },
        { sub: 1 },
        { aud: 5 },
        { iss: null },
      ];
      return await Promise.all(patches.map((p) => craft({}, p)));
    },
  },
  {
    name: "an unknown critical header extension",
    tokens: async () => [await craft({ crit: ["x-floodgate-bypass"], "x-floodgate-bypass": true }, {})],
  },
  {
    name: "oversized (over 4 KiB) though correctly signed",
    tokens: async () => [
      await craft({}, { pad: "x".repeat(4096) }),
      await craft({}, { models: Array(1200).fill("m") }),
    ],
  },
  {
    name: "trailing or leading garbage",
    tokens: async () => {
      const t = await craft({}, {});
      return [`${t}x`, `${t}.`, `${t}.x`, `${t}..`, `${t}!`, `${t}%00`, `${t}AAAA`, `x${t}`, `.${t}`, `${t}.${t}`];
    },
  },
  {
    name: "the signature re-encoded other than canonically (= padding, unused bits of its last character set)",
    tokens: async () => {
      const t = await craft({}, {});
      const [h, p, s = ""] = t.split(".");
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      // The last character carries (bytes × 8) mod 6 bits of the signature; the rest no decoder reads.
      const used = (fromB64url(s).length * 8) % 6;
      const last = alphabet.indexOf(s.at(-1) ?? "");
      const unused = (1 << (6 - used)) - 1;
      const variants = [...alphabet].filter((_, i) => (i & ~unused) === (last & ~unused) && i !== last);
      expect(variants).toHaveLength(unused);
      return [`${t}=`, `${t}==`, `${h}.${p}.${s}%3D`, ...variants.map((c) => `${h}.${p}.${s.slice(0, -1)}${c}`)];
    },
  },
  {
    name: "another token's signature spliced onto changed claims",
    tokens: async () => {
      const sig = ctx.live.split(".")[2] ?? "";
      const [h, p] = (await craft({}, { pool: "admin", models: ["every-model"] })).split(".");
      const [h2] = ctx.live.split(".");
      return [`${h}.${p}.${sig}`, `${h2}.${p}.${sig}`];
    },
  },
  {
    name: "not a three-part compact JWS (JWE-shaped, two parts, empty)",
    tokens: async () => {
      const t = await craft({}, {});
      const [h, p, s] = t.split(".");
      return [`${h}.${p}`, `${h}.${p}.${s}.${s}.${s}`, `${h}..${s}`, `.${p}.${s}`, "..", "a.b.c", "garbage"];
    },
  },
];

beforeAll(async () => {
  const model = await makeModel();
  const live = await token([model]);
  ctx = {
    claims: decodeJwt(live.token) as Fields,
    live: live.token,
    header: { alg: "EdDSA", kid: keySet.active, typ: AGENT_TOKEN_TYPE },
    k2: await privateKey("k-test-2"),
    k1: await privateKey("k-test-1"),
  };
});

describe("agent tokens: the harness", () => {
  it("a token crafted by this suite's signer with no defect verifies and connects (so each refusal below is its defect's)", async () => {
    const tok = await craft({}, {});
    expect(await verifyAgentToken(env, tok)).toMatchObject({ jti: ctx.claims.jti });
    const res = await connectRequest(tok);
    expect(res.status).toBe(101);
    res.webSocket?.accept();
    res.webSocket?.close(1000, "done");
  });

  it("a token signed by the older key of the set (k-test-1) still verifies and connects: rotation by kid", async () => {
    const tok = await craft({ kid: "k-test-1" }, {}, ctx.k1);
    expect(await verifyAgentToken(env, tok)).toMatchObject({ jti: ctx.claims.jti });
    const res = await connectRequest(tok);
    expect(res.status).toBe(101);
    res.webSocket?.accept();
    res.webSocket?.close(1000, "done");
  });

  it("a correctly signed token of up to 4096 characters verifies; past 4096 it is refused", async () => {
    const base = await craft({}, { pad: "" });
    // Each 3 bytes of claims JSON become 4 characters: grow the pad until the token passes 4096.
    let pad = Math.floor(((4096 - base.length) * 3) / 4) - 4;
    let under = await craft({}, { pad: "x".repeat(pad) });
    let over = under;
    while (over.length <= 4096) {
      under = over;
      over = await craft({}, { pad: "x".repeat(++pad) });
    }
    expect(under.length).toBeLessThanOrEqual(4096);
    expect(under.length).toBeGreaterThan(4090);
    expect(await verifyAgentToken(env, under)).toMatchObject({ jti: ctx.claims.jti });
    expect(await outcome(over)).toEqual(refused(over));
  });
});

describe(`agent tokens: ${BAD_CLASSES.length + 3} classes of bad token, 0 accepted`, () => {
  for (const c of BAD_CLASSES) {
    it(`${c.name}: refused by verifyAgentToken and 401 before the upgrade`, async () => {
      const tokens = await c.tokens();
      expect(tokens.length).toBeGreaterThan(0);
      expect(await outcomes(tokens)).toEqual(tokens.map(refused));
    });
  }

  it("revoked: the signature still verifies, but the registry says dead and connect is 401 before the upgrade", async () => {
    const model = await makeModel();
    const t = await token([model]);
    expect((await call("DELETE", `/v1/admin/agent-tokens/${t.id}`, { key: ADMIN })).status).toBe(204);
    // Revocation is a registry row, not a property of the signature: the verifier alone passes it.
    expect(await verifyAgentToken(env, t.token)).toMatchObject({ jti: t.id });
    const res = await connectRequest(t.token);
    expect(res.status).toBe(401);
    expect(res.webSocket).toBeNull();
  });

  it("a token for another pool and model connects, but its agent is only ever leased jobs of its token's models", async () => {
    const mine = await makeModel();
    const theirs = await makeModel();
    const acct = await makeAccount();
    const theirJobs = [await submit(theirs, acct.key), await submit(theirs, acct.key)].map((r) => r.body.id);
    const { body: myJob } = await submit(mine, acct.key);
    const t = await token([mine]);
    const { conn, id } = await connect(t.token);
    if (!conn) throw new Error("no connection");
    // Claiming to have the other model loaded does not widen the token.
    conn.send({
      v: 2,
      type: "agent.hello",
      trace: "t",
      agent_id: id,
      name: "dishonest",
      gpus: [],
      versions: [{ model: theirs, version: "v1", state: "serving" }],
      slots: 2,
      prefetch: 1,
      leases: [],
    });
    await conn.next("agent.welcome");
    conn.send({ v: 2, type: "work.request", trace: "t", credits: 5 });
    conn.send(heartbeat([], 5));
    await conn.next("agent.heartbeat_ack");
    expect(conn.inbox.filter((m) => m.type === "job.leases")).toEqual([]);
    // Reconnected with the hello honest, it gets its own model's job and nothing else.
    conn.ws.close(1000, "reconnecting");
    const honest = await connect(t.token, id);
    if (!honest.conn) throw new Error("no connection");
    honest.conn.send(hello(id));
    await honest.conn.next("agent.welcome");
    honest.conn.send({ v: 2, type: "work.request", trace: "t", credits: 5 });
    const got = (await honest.conn.next("job.leases")) as { leases: LeaseGrant[] };
    expect(got.leases.map((l) => l.job_id)).toEqual([myJob.id]);
    honest.conn.send(heartbeat([], 4));
    await honest.conn.next("agent.heartbeat_ack");
    const all = [...conn.inbox, ...honest.conn.inbox].flatMap((m) =>
      m.type === "job.leases" ? m.leases.map((l) => l.model) : [],
    );
    expect(all.filter((m) => m !== mine)).toEqual([]);
    for (const jobId of theirJobs) {
      expect((await call("GET", `/v1/jobs/${jobId}`, { key: acct.key })).body).toMatchObject({ status: "queued" });
    }
    honest.conn.ws.close(1000, "done");
  });

  it(
    "fuzzed strings, JWT-shaped forgeries and mutations of a valid token: 0 accepted",
    async () => {
      const valid = await craft({}, {});
      const [vh = "", vp = "", vs = ""] = valid.split(".");
      const seg = fc.oneof(
        fc.base64String().map((s) => s.replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "")),
        fc.json().map((j) => b64url(j)),
        fc.constantFrom(vh, vp, vs),
      );
      const header = fc.record(
        {
          alg: fc.constantFrom("EdDSA", "none", "HS256", "RS256", "ES256", "Ed25519", ""),
          kid: fc.oneof(fc.constantFrom("k-test-1", "k-test-2"), fc.string()),
          typ: fc.constantFrom(AGENT_TOKEN_TYPE, "JWT"),
        },
        { requiredKeys: [] },
      );
      const forged = fc
        .tuple(header, fc.dictionary(fc.string(), fc.jsonValue()), fc.uint8Array({ minLength: 0, maxLength: 80 }))
        .map(
          ([h, p, s]) => `${b64url(JSON.stringify(h))}.${b64url(JSON.stringify({ ...ctx.claims, ...p }))}.${b64url(s)}`,
        );
      // Mutations of the signed part and of the signature, its last character included.
      const signedLen = vh.length + 1 + vp.length;
      const mutated = fc
        .tuple(
          fc.oneof(fc.nat({ max: signedLen - 1 }), fc.integer({ min: signedLen + 1, max: valid.length - 1 })),
          fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
          fc.constantFrom("replace", "insert", "delete"),
        )
        .map(([i, ch, op]) =>
          op === "replace"
            ? valid.slice(0, i) + ch + valid.slice(i + 1)
            : op === "insert"
              ? valid.slice(0, i) + ch + valid.slice(i)
              : valid.slice(0, i) + valid.slice(i + 1),
        )
        .filter((t) => t !== valid);
      const truncated = fc.nat({ max: valid.length - 1 }).map((n) => valid.slice(0, n));
      const arbitrary = fc.oneof(
        fc.string({ unit: "binary", maxLength: 300 }),
        fc.array(seg, { minLength: 1, maxLength: 5 }).map((s) => s.join(".")),
        forged,
        mutated,
        truncated,
      );
      let tried = 0;
      let accepted = 0;
      let connected = 0;
      await fc.assert(
        fc.asyncProperty(arbitrary, async (t) => {
          tried++;
          if ((await verifyAgentToken(env, t)) !== undefined) accepted++;
          // Only visible ASCII can travel in a header; the rest was checked by the verifier alone.
          if (/^[\x21-\x7e]+$/.test(t)) {
            const res = await connectRequest(t);
            if (res.status === 101) {
              connected++;
              res.webSocket?.accept();
              res.webSocket?.close(1000, "done");
            }
          }
          return accepted === 0 && connected === 0;
        }),
        { numRuns: RUNS },
      );
      console.log(
        `agent-token fuzz: ${tried} tokens tried, ${accepted} accepted by the verifier, ${connected} connected`,
      );
      expect(accepted).toBe(0);
      expect(connected).toBe(0);
    },
    60_000 + RUNS * 20,
  );
});

/** A connect with a token and an agent id: its status, and the error code of a refusal. */
async function connectAs(tok: string, id: string): Promise<{ status: number; code?: string }> {
  const res = await connectRequest(tok, id);
  if (res.webSocket) {
    res.webSocket.accept();
    res.webSocket.close(1000, "done");
    return { status: res.status };
  }
  return { status: res.status, code: ((await res.json()) as { error?: { code: string } }).error?.code };
}

describe("agent ids are bound to the token they connected with", () => {
  it("another token presenting a connected agent's id is refused with 403 agent_id_taken; the agent keeps its socket and its lease", async () => {
    const mine = await makeModel();
    const theirs = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(mine, acct.key);
    const holder = await welcomed(mine);
    const lease = await leaseOne(holder.conn);
    const foreign = await token([theirs]);
    const samePool = await token([mine]);
    for (const t of [foreign, samePool]) {
      expect(await connectAs(t.token, holder.id)).toEqual({ status: 403, code: "agent_id_taken" });
    }
    const ref = { job_id: job.id, epoch: lease.epoch };
    holder.conn.send(heartbeat([ref]));
    expect(await holder.conn.next("agent.heartbeat_ack")).toMatchObject({ stale: [] });
    expect(holder.conn.inbox.filter((m) => m.type === "job.leases")).toEqual([]);
    // The token it connected with may connect again (a reconnect) and resumes the lease.
    const again = await connect(holder.t.token, holder.id);
    if (!again.conn) throw new Error("the agent's own token could not reconnect");
    again.conn.send(hello(holder.id, [ref]));
    expect(await again.conn.next("agent.welcome")).toMatchObject({ resumed: [ref], stale: [] });
    again.conn.ws.close(1000, "done");
  });

  it("once the token an id is bound to is revoked, another token may take the id", async () => {
    const model = await makeModel();
    const holder = await welcomed(model);
    const next = await token([model]);
    expect(await connectAs(next.token, holder.id)).toEqual({ status: 403, code: "agent_id_taken" });
    expect((await call("DELETE", `/v1/admin/agent-tokens/${holder.t.id}`, { key: ADMIN })).status).toBe(204);
    expect((await within(holder.conn.closed, 3000, "the close")).code).toBe(CLOSE.unauthorized);
    expect(await connectAs(next.token, holder.id)).toEqual({ status: 101 });
  });
});

describe("revoked agent tokens", () => {
  it("connect asks the registry every time: a token revoked outside this isolate cannot connect, even within the isolate's cache time", async () => {
    const model = await makeModel();
    const t = await token([model]);
    expect(await connectAs(t.token, agentId())).toEqual({ status: 101 });
    // Revoked at the registry, as another isolate does it: this isolate's caches are not told.
    expect(await actor<RegistryActor>(env.REGISTRY, "global").revokeToken(t.id)).toMatchObject({ ok: true });
    expect(await connectAs(t.token, agentId())).toEqual({ status: 401, code: "unauthorized" });
  });

  it("a connection whose token is revoked without its socket being closed is closed with 4401 at its next heartbeat, and its lease goes back", async () => {
    const model = await makeModel();
    const acct = await makeAccount();
    const { body: job } = await submit(model, acct.key);
    const { conn, t } = await welcomed(model);
    const lease = await leaseOne(conn);
    const { runInDurableObject } = await import("cloudflare:test");
    const registry = env.REGISTRY.get(env.REGISTRY.idFromName("global"));
    // The revocation raced the connection: the row says revoked, and no one closed the socket.
    await runInDurableObject(registry, async (_i, state) => {
      state.storage.sql.exec("UPDATE agent_tokens SET revoked_at = ? WHERE id = ?", Date.now(), t.id);
    });
    conn.send(heartbeat([{ job_id: job.id, epoch: lease.epoch }]));
    expect((await within(conn.closed, 3000, "the close")).code).toBe(CLOSE.unauthorized);
    expect((await call("GET", `/v1/jobs/${job.id}`, { key: acct.key })).body).toMatchObject({ status: "queued" });
  });
});

describe("agent tokens while connected", () => {
  it("a token that expires while connected closes its socket with 4401 at the next heartbeat", async () => {
    const now = Math.floor(Date.now() / 1000);
    const tok = await craft({}, { iat: now, nbf: now, exp: now + 2 });
    const { conn, id } = await connect(tok);
    if (!conn) throw new Error("no connection");
    conn.send(hello(id));
    await conn.next("agent.welcome");
    const deadline = Date.now() + 5000;
    while (Date.now() / 1000 <= now + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    conn.send(heartbeat());
    expect((await conn.closed).code).toBe(CLOSE.unauthorized);
  }, 10_000);
});
