import { describe, expect, it } from "vitest";
import { evictionMarks, parseAgentConfig } from "./config.ts";

const TOKEN = "eyJhbGciOiJFZERTQSJ9.e30.sig-sig-sig-sig";

describe("agent configuration", () => {
  it("flags win over the environment, and every flag has a variable", () => {
    const r = parseAgentConfig(
      { url: "http://127.0.0.1:8787", slots: "4" },
      { FLOODGATE_AGENT_TOKEN: TOKEN, FLOODGATE_SLOTS: "2", FLOODGATE_PREFETCH: "3" },
    );
    expect(r).toMatchObject({
      ok: true,
      config: { url: "http://127.0.0.1:8787", token: TOKEN, slots: 4, prefetch: 3, max_vram_pct: 95 },
    });
    expect(r.ok && r.config.runner).toBeUndefined();
  });

  it("without --runner the agent serves the rollout; --runner serves one runner", () => {
    const rollout = parseAgentConfig({ url: "http://x.test", token: TOKEN }, {});
    expect(rollout.ok && rollout.config.runner).toBeUndefined();
    const fixed = parseAgentConfig({ url: "http://x.test", token: TOKEN }, { FLOODGATE_RUNNER: "demo" });
    expect(fixed.ok && fixed.config.runner).toBe("demo");
  });

  it("--preemptible is a switch, also FLOODGATE_PREEMPTIBLE=1|true|0|false, with a reclaim grace in seconds", () => {
    const plain = parseAgentConfig({ url: "http://x.test", token: TOKEN }, {});
    expect(plain).toMatchObject({ ok: true, config: { preemptible: false, preempt_grace_s: 20 } });
    const flag = parseAgentConfig({ url: "http://x.test", token: TOKEN, preemptible: true }, {});
    expect(flag).toMatchObject({ ok: true, config: { preemptible: true } });
    const env = parseAgentConfig(
      { url: "http://x.test", token: TOKEN },
      { FLOODGATE_PREEMPTIBLE: "true", FLOODGATE_PREEMPT_GRACE_S: "5" },
    );
    expect(env).toMatchObject({ ok: true, config: { preemptible: true, preempt_grace_s: 5 } });
    const bad = parseAgentConfig({ url: "http://x.test", token: TOKEN }, { FLOODGATE_PREEMPTIBLE: "maybe" });
    expect(bad).toMatchObject({ ok: false, message: expect.stringMatching(/^--preemptible \/ FLOODGATE_PREEMPTIBLE/) });
  });

  it("the cache is evicted past 90% of its disk down to 80% by default; a size mark is optional, its low mark 80% of its high one", () => {
    const dflt = parseAgentConfig({ url: "http://x.test", token: TOKEN }, {});
    expect(dflt.ok && evictionMarks(dflt.config)).toEqual({ diskHighPct: 90, diskLowPct: 80 });
    const sized = parseAgentConfig({ url: "http://x.test", token: TOKEN, "cache-high-gib": "100" }, {});
    expect(sized.ok && evictionMarks(sized.config)).toEqual({
      highBytes: 100 * 1024 ** 3,
      lowBytes: 80 * 1024 ** 3,
      diskHighPct: 90,
      diskLowPct: 80,
    });
    const env = parseAgentConfig(
      { url: "http://x.test", token: TOKEN },
      {
        FLOODGATE_CACHE_HIGH_GIB: "10",
        FLOODGATE_CACHE_LOW_GIB: "4",
        FLOODGATE_DISK_HIGH_PCT: "70",
        FLOODGATE_DISK_LOW_PCT: "50",
      },
    );
    expect(env.ok && evictionMarks(env.config)).toEqual({
      highBytes: 10 * 1024 ** 3,
      lowBytes: 4 * 1024 ** 3,
      diskHighPct: 70,
      diskLowPct: 50,
    });
  });

  it("eviction marks out of order, or a low size mark without a high one, are refused", () => {
    const base = { url: "http://x.test", token: TOKEN };
    expect(parseAgentConfig({ ...base, "cache-low-gib": "4" }, {})).toEqual({
      ok: false,
      message: "--cache-low-gib needs --cache-high-gib (the size that starts eviction)",
    });
    expect(parseAgentConfig({ ...base, "cache-high-gib": "4", "cache-low-gib": "4" }, {})).toEqual({
      ok: false,
      message: "--cache-low-gib must be below --cache-high-gib",
    });
    expect(parseAgentConfig({ ...base, "disk-high-pct": "50" }, {})).toEqual({
      ok: false,
      message: "--disk-low-pct must be below --disk-high-pct",
    });
    expect(parseAgentConfig({ ...base, "disk-high-pct": "0" }, {}).ok).toBe(false);
  });

  it("a missing token names the flag and its variable", () => {
    const r = parseAgentConfig({ url: "http://x.test" }, {});
    expect(r).toEqual({ ok: false, message: "--token is required (or set FLOODGATE_AGENT_TOKEN)" });
  });

  it("a bad value is refused with the flag's name", () => {
    const r = parseAgentConfig({ url: "ftp://x.test", token: TOKEN }, {});
    expect(r).toMatchObject({ ok: false, message: expect.stringMatching(/^--url/) });
    const s = parseAgentConfig({ url: "http://x.test", token: TOKEN, slots: "0" }, {});
    expect(s.ok).toBe(false);
    const k = parseAgentConfig({ url: "http://x.test", token: TOKEN, runner: "cobol" }, {});
    expect(k.ok).toBe(false);
  });

  it("the python runner's model, size and interpreter come from flags or FLOODGATE_MODEL, FLOODGATE_MODEL_SIZE, FLOODGATE_PYTHON", () => {
    const dflt = parseAgentConfig({ url: "http://x.test", token: TOKEN, runner: "python" }, {});
    expect(dflt).toMatchObject({ ok: true, config: { runner: "python", model: "reference", model_size: "tiny" } });
    expect(dflt.ok && dflt.config.python).toBeUndefined();
    const env = parseAgentConfig(
      { url: "http://x.test", token: TOKEN, "model-size": "large" },
      {
        FLOODGATE_RUNNER: "python",
        FLOODGATE_MODEL: "reference",
        FLOODGATE_MODEL_SIZE: "small",
        FLOODGATE_PYTHON: "/opt/py/bin/python3",
      },
    );
    expect(env).toMatchObject({
      ok: true,
      config: { runner: "python", model: "reference", model_size: "large", python: "/opt/py/bin/python3" },
    });
    const bad = parseAgentConfig({ url: "http://x.test", token: TOKEN, "model-size": "huge" }, {});
    expect(bad).toMatchObject({ ok: false, message: expect.stringMatching(/^--model-size \/ FLOODGATE_MODEL_SIZE/) });
    expect(parseAgentConfig({ url: "http://x.test", token: TOKEN, model: "Not A Name" }, {}).ok).toBe(false);
  });

  it("peers and rate limits: --peer-addr is HOST:PORT, --peer-port needs it, and limits are positive MiB/s", () => {
    const base = { url: "http://x.test", token: TOKEN };
    const ok = parseAgentConfig(
      { ...base, "peer-addr": "10.0.0.7:7070", "peer-port": "7071" },
      { FLOODGATE_MAX_UPLOAD_MIBPS: "25" },
    );
    expect(ok).toMatchObject({
      ok: true,
      config: { peer_addr: "10.0.0.7:7070", peer_port: 7071, max_upload_mibps: 25 },
    });
    expect(parseAgentConfig({ ...base, "peer-port": "7071" }, {})).toEqual({
      ok: false,
      message: "--peer-port needs --peer-addr (where peers reach that port)",
    });
    expect(parseAgentConfig({ ...base, "peer-addr": "10.0.0.7" }, {})).toMatchObject({
      ok: false,
      message: expect.stringContaining("--peer-addr / FLOODGATE_PEER_ADDR"),
    });
    expect(parseAgentConfig({ ...base, "max-download-mibps": "0" }, {})).toMatchObject({
      ok: false,
      message: expect.stringContaining("--max-download-mibps"),
    });
  });
});
