import { describe, expect, it } from "vitest";
import { attribute, indexBundle, sampleWeights, type CallFrame, type CpuProfile } from "./profile.ts";

/**
 * A bundle as esbuild writes it: module markers, a class with methods, and a library. Lines
 * are 0-based in profiles, so the index of each line is given beside it.
 */
const BUNDLE = [
  "var __name = (target, value) => target;", // 0
  "// node_modules/zod/v4/core/core.js", // 1
  "function parse(x) {", // 2
  "  return x;", // 3
  "}", // 4
  "// mesh/sql/durable.ts", // 5
  "function durableSql(storage) {", // 6
  "  return {", // 7
  "    all(query, ...params) {", // 8
  "      return storage.exec(query, ...params).toArray();", // 9
  "    }", // 10
  "  };", // 11
  "}", // 12
  "// mesh/agent-actor.ts", // 13
  "var AgentActor = class extends DurableObject {", // 14
  "  static {", // 15
  '    __name(this, "AgentActor");', // 16
  "  }", // 17
  "  models;", // 18
  "  async webSocketMessage(ws, message) {", // 19
  "    const frame = parse(message);", // 20
  "    await this.requestWork(ws);", // 21
  "    const ok = await actor(this.env.JOB, frame.id).progress(frame);", // 22
  "  }", // 23
  "  async requestWork(ws) {", // 24
  "    const send = async () => {", // 25
  "      ws.send(frame);", // 26
  "    };", // 27
  "    await send();", // 28
  "  }", // 29
  "};", // 30
  "// edge/routes/jobs.ts", // 31
  "async function submit(c) {", // 32
  "  return c.json({});", // 33
  "}", // 34
].join("\n");

const URL = "bench/out/worker/index.js";

let nextId = 1;
/** A profile node builder: a tree of frames, each with its self samples. */
interface Spec {
  fn: string;
  url?: string;
  line?: number;
  self?: number;
  ticks?: { line: number; ticks: number }[];
  children?: Spec[];
}

/** Builds a CDP profile from a tree of specs; every sample is `interval` µs after the last. */
function profileOf(root: Spec[], interval = 100): CpuProfile {
  nextId = 1;
  const nodes: CpuProfile["nodes"] = [];
  const samples: number[] = [];
  const build = (s: Spec): number => {
    const id = nextId++;
    const frame: CallFrame = {
      functionName: s.fn,
      scriptId: s.url ? "6" : "0",
      url: s.url ?? "",
      lineNumber: s.line ?? -1,
      columnNumber: 0,
    };
    const node = { id, callFrame: frame, hitCount: s.self ?? 0, children: [] as number[], positionTicks: s.ticks };
    nodes.push(node);
    for (let i = 0; i < (s.self ?? 0); i++) samples.push(id);
    node.children = (s.children ?? []).map(build);
    return id;
  };
  const rootNode = {
    id: nextId++,
    callFrame: { functionName: "(root)", scriptId: "0", url: "", lineNumber: -1, columnNumber: -1 },
    children: [] as number[],
  };
  nodes.push(rootNode);
  rootNode.children = root.map(build);
  return { nodes, startTime: 0, endTime: samples.length * interval, samples, timeDeltas: samples.map(() => interval) };
}

const index = indexBundle(BUNDLE);

/** A map of ms as a plain object, to µs. */
function ms(m: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...m].map(([k, v]) => [k, Math.round(v * 1000) / 1000]));
}
const opts = { bundle: { url: URL, index }, workerModules: /^(edge\/|node_modules\/hono\/)/, intervalUs: 100 };

describe("indexBundle", () => {
  it("names each line by the module marker above it", () => {
    expect(index.moduleAt(0)).toBe("(bundle)");
    expect(index.moduleAt(3)).toBe("node_modules/zod/v4/core/core.js");
    expect(index.moduleAt(9)).toBe("mesh/sql/durable.ts");
    expect(index.moduleAt(26)).toBe("mesh/agent-actor.ts");
    expect(index.moduleAt(33)).toBe("edge/routes/jobs.ts");
  });

  it("finds class methods by the name keepNames records, with the lines they span", () => {
    expect(index.methodAt(26)).toMatchObject({ className: "AgentActor", method: "requestWork", line: 24 });
    expect(index.methodAt(22)).toMatchObject({ className: "AgentActor", method: "webSocketMessage" });
    expect(index.methodAt(33)).toBeUndefined();
  });

  it("tells entry methods from those the class calls on itself", () => {
    const entry = Object.fromEntries(index.methods.map((m) => [m.method, m.entry]));
    expect(entry).toEqual({ webSocketMessage: true, requestWork: false });
  });

  it("takes a class's first field as the line that runs once per construction when it has no constructor", () => {
    expect(index.classes).toEqual([{ className: "AgentActor", line: 14, constructLine: 18 }]);
  });
});

describe("sampleWeights", () => {
  it("charges a sample before a gap outside the lock the sampling period, not the gap", () => {
    const p: CpuProfile = {
      nodes: [],
      startTime: 0,
      endTime: 0,
      samples: [1, 1, 1, 1],
      timeDeltas: [0, 110, 5000, 90],
    };
    // Period: the median of the gaps within 4 × 100 µs (90, 110) = 110.
    expect(sampleWeights(p, 100)).toEqual([110, 110, 90, 110]);
  });

  it("falls back to the requested interval when no two samples are close", () => {
    const p: CpuProfile = { nodes: [], startTime: 0, endTime: 0, samples: [1, 1], timeDeltas: [0, 9000] };
    expect(sampleWeights(p, 500)).toEqual([500, 500]);
  });
});

describe("attribute", () => {
  const profile = profileOf([
    {
      fn: "webSocketMessage",
      url: URL,
      line: 19,
      self: 5,
      ticks: [
        { line: 23, ticks: 4 },
        { line: 21, ticks: 1 },
      ],
      children: [
        { fn: "parse", url: URL, line: 2, self: 2 },
        {
          fn: "requestWork",
          url: URL,
          line: 24,
          children: [{ fn: "send", url: URL, line: 25, children: [{ fn: "send", self: 3 }] }],
        },
      ],
    },
    // A closure resumed after an await: its method is the hop.
    { fn: "send", url: URL, line: 25, self: 1, children: [{ fn: "mystery", self: 1 }] },
    // SQL under the actor: the innermost kind wins over our own code above it.
    {
      fn: "webSocketMessage",
      url: URL,
      line: 19,
      children: [
        {
          fn: "all",
          url: URL,
          line: 8,
          children: [
            { fn: "exec", self: 4 },
            { fn: "toArray", self: 1 },
          ],
        },
      ],
    },
    // The Worker's route handler under the Worker's modules.
    { fn: "submit", url: URL, line: 32, self: 2 },
    { fn: "(garbage collector)", self: 2 },
    { fn: "(program)", self: 1 },
    { fn: "(idle)", self: 3 },
    { fn: "then", self: 1 },
  ]);
  const a = attribute(profile, opts);

  it("names the hop by the method enclosing the outermost frame of the bundle", () => {
    expect(ms(a.byHop)).toEqual({
      "AgentActor.webSocketMessage": 1.5,
      "AgentActor.requestWork": 0.2,
      "Worker fetch (HTTP API)": 0.2,
      GC: 0.2,
      "(program)": 0.1,
      "(idle)": 0.3,
      "runtime, no JS caller": 0.1,
    });
  });

  it("names the kind by the innermost frame that has one, up to our own code", () => {
    expect(ms(a.byKind)).toEqual({
      "JS: mesh/agent-actor.ts": 0.6,
      "zod parsing": 0.2,
      "WebSocket (send, attachments)": 0.3,
      "runtime API mystery()": 0.1,
      "SQLite (sql.exec, cursors)": 0.5,
      "JS: edge/routes/jobs.ts": 0.2,
      GC: 0.2,
      "(program): V8 in the lock, no JS": 0.1,
      "(idle)": 0.3,
      "RPC result promises (then, catch)": 0.1,
    });
  });

  it("adds up every sample, and counts idle apart", () => {
    expect(a.totalMs).toBeCloseTo(2.6, 6);
    expect(a.idleMs).toBeCloseTo(0.3, 6);
    expect(a.samples).toBe(26);
  });

  it("splits our code's self time by line, in proportion to the line's ticks", () => {
    const rpc = a.lines.get(23);
    expect(rpc).toMatchObject({ fn: "AgentActor.webSocketMessage", text: expect.stringContaining(".progress(frame)") });
    expect(rpc?.ms).toBeCloseTo(0.4, 6);
    expect(a.lines.get(21)?.ms).toBeCloseTo(0.1, 6);
  });

  it("names every sample of another isolate by that isolate, kinds still by the stack", () => {
    const other = attribute(
      profileOf([{ fn: "fetch", url: "entry.worker.js", line: 3, self: 2, children: [{ fn: "exec", self: 1 }] }]),
      {
        isolateHop: "Miniflare's entry worker",
        intervalUs: 100,
      },
    );
    expect(ms(other.byHop)).toEqual({ "Miniflare's entry worker": 0.3 });
    expect(ms(other.byKind)).toEqual({ "built-in JS: entry.worker.js": 0.2, "SQLite (sql.exec, cursors)": 0.1 });
  });

  it("names a Node process's files by their path under its root", () => {
    const node = attribute(
      profileOf([
        {
          fn: "onFrame",
          url: "file:///repo/gpu-agent/agent.ts",
          line: 10,
          self: 1,
          children: [
            { fn: "unpack", url: "file:///repo/node_modules/msgpackr/unpack.js", line: 1, self: 2 },
            { fn: "setTimeout", url: "node:timers", line: 1, self: 1 },
          ],
        },
      ]),
      { root: "/repo", isolateHop: "agents", intervalUs: 100 },
    );
    expect(ms(node.byKind)).toEqual({
      "JS: gpu-agent/agent.ts": 0.1,
      "msgpack (msgpackr, shared/codec.ts)": 0.2,
      "built-in JS: node:timers": 0.1,
    });
  });
});
