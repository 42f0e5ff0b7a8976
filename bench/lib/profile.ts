/**
 * Attribution of a V8 CPU profile (the Chrome DevTools Protocol's `Profiler.Profile`, as
 * workerd's inspector returns it) to categories a reader can act on:
 *
 * - a **hop**: where the work entered the isolate, from the outermost frame of the Worker's
 *   bundle on the sample's stack: the Worker's fetch handler, or `Class.method` of an actor
 *   (the method enclosing that frame, so an inner closure or a resumed `await` counts for its
 *   method);
 * - a **kind** of work: the innermost frame that belongs to a known kind (SQLite, msgpack, zod,
 *   a library, a runtime API such as WebSocket send) below the innermost frame of our own code;
 *   our own code otherwise, by source module;
 * - a **line**: our own code's self time by source line, where V8 puts the time of runtime calls
 *   it does not show as frames (an RPC call on a stub, creating the actor it addresses).
 *
 * Source modules and class methods come from the bundle itself ({@link indexBundle}): esbuild
 * marks each module with a `// path` comment and keeps class and method names when it does not
 * minify, which is how `wrangler deploy --dry-run` bundles.
 *
 * Pure functions; the `cost` benchmark feeds them profiles from workerd.
 */
import { relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** A frame of a CDP profile node. Lines and columns are 0-based; natives have `url` "". */
export interface CallFrame {
  functionName: string;
  scriptId: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

export interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
  /** Self samples by source line (1-based), for nodes with self samples. */
  positionTicks?: { line: number; ticks: number }[];
}

/** A CDP `Profiler.Profile`: times in µs. */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/**
 * The time (µs) each sample stands for. V8 samples a thread only while it holds the isolate's
 * lock, so a long gap between two samples is time spent outside the isolate, not in the
 * sampled stack. The sampling period as it ran is the median of the gaps up to four times the
 * requested `intervalUs` (the profiler runs late under load), or `intervalUs` when there are
 * none; a sample stands for the gap to the next one when that is at most twice the period,
 * and for the period otherwise.
 */
export function sampleWeights(profile: CpuProfile, intervalUs: number): number[] {
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const runs = deltas
    .slice(1)
    .filter((d) => d > 0 && d <= 4 * intervalUs)
    .sort((a, b) => a - b);
  const period = runs.length > 0 ? Math.max(intervalUs, runs[Math.floor(runs.length / 2)] as number) : intervalUs;
  return samples.map((_, i) => {
    const next = deltas[i + 1];
    return next !== undefined && next > 0 && next <= 2 * period ? next : period;
  });
}

/** A class method of the bundle, with the lines it spans (0-based, end exclusive). */
export interface BundleMethod {
  className: string;
  method: string;
  line: number;
  end: number;
  /** Not called as `this.<name>(` inside its class: a runtime handler or an RPC method. */
  entry: boolean;
}

/** A class of the bundle and the line that runs once per construction, when it has one. */
export interface BundleClass {
  className: string;
  line: number;
  /** Its explicit constructor, else its first instance field: the first code a `new` runs. */
  constructLine: number | undefined;
}

/** Where each line of a bundle came from. */
export interface BundleIndex {
  /** The source module (`mesh/scheduler-actor.ts`, `node_modules/zod/...`) of a line. */
  moduleAt(line: number): string;
  /** The class method a line is in, if any. */
  methodAt(line: number): BundleMethod | undefined;
  /** Every class method. */
  methods: readonly BundleMethod[];
  classes: readonly BundleClass[];
  lineCount: number;
  /** The text of a line, trimmed. */
  lineText(line: number): string;
  /** Where a line came from: `mesh/agent-actor.ts:297` (from the source map), else the module. */
  where(line: number): string;
}

/** What {@link indexBundle} needs of a source map: Node's `module.SourceMap` has it. */
export interface LineMap {
  findEntry(line: number, column: number): { originalSource?: string; originalLine?: number } | object;
}

const MODULE_MARK = /^\/\/ ((?:[\w@.-]+\/)*[\w@.-]+\.(?:[cm]?[jt]sx?|json))$/;
const CLASS_START = /^(?:(?:var|let|const)\s+([\w$]+)\s*=\s*class\b|(?:export\s+)?class\s+([\w$]+)\b)/;
const CLASS_END = /^\};?\s*$/;
const METHOD = /^ {2}(?:static\s+)?(?:async\s+)?(?:\*\s*)?(?:(?:get|set)\s+)?(#?[\w$]+)\s*\(/;
const FIELD = /^ {2}#?[\w$]+(\s*=.*)?;\s*$/;
const NOT_METHODS = new Set(["if", "for", "while", "switch", "catch", "return", "function", "with"]);

/** A bundle's source map: its lines, the folder its sources are relative to, the project root. */
export interface BundleMap {
  lines: LineMap;
  base: string;
  root: string;
}

/**
 * Indexes a bundle's source: module markers, classes and their methods, and with the bundle's
 * source map, the original line of each line.
 */
export function indexBundle(source: string, map?: BundleMap): BundleIndex {
  const lines = source.split("\n");
  const marks: { line: number; path: string }[] = [];
  const methods: BundleMethod[] = [];
  const classes: BundleClass[] = [];
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i] as string;
    const mark = MODULE_MARK.exec(text);
    if (mark) {
      marks.push({ line: i, path: mark[1] as string });
      continue;
    }
    const cls = CLASS_START.exec(text);
    if (!cls) continue;
    let end = i + 1;
    while (end < lines.length && !CLASS_END.test(lines[end] as string)) end++;
    const body = lines.slice(i, end + 1).join("\n");
    // esbuild's keepNames records the class's own name; the variable may carry a suffix.
    const named = /__name\(this, "([\w$]+)"\)/.exec(body);
    const className = named?.[1] ?? ((cls[1] ?? cls[2]) as string);
    const found: BundleMethod[] = [];
    let firstField: number | undefined;
    for (let j = i + 1; j < end; j++) {
      if (firstField === undefined && found.length === 0 && FIELD.test(lines[j] as string)) firstField = j;
      const m = METHOD.exec(lines[j] as string);
      if (!m || NOT_METHODS.has(m[1] as string)) continue;
      const method = m[1] as string;
      const prev = found.at(-1);
      if (prev) prev.end = j;
      const self = new RegExp(`this\\.${method.replace(/[$#]/g, "\\$&")}\\(`);
      found.push({ className, method, line: j, end, entry: method === "constructor" || !self.test(body) });
    }
    methods.push(...found);
    classes.push({
      className,
      line: i,
      constructLine: found.find((m) => m.method === "constructor")?.line ?? firstField,
    });
    i = end;
  }
  const moduleAt = (line: number): string => {
    let lo = 0;
    let hi = marks.length - 1;
    let best = "(bundle)";
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = marks[mid] as { line: number; path: string };
      if (m.line <= line) {
        best = m.path;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  };
  const methodAt = (line: number): BundleMethod | undefined => {
    let lo = 0;
    let hi = methods.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = methods[mid] as BundleMethod;
      if (line < m.line) hi = mid - 1;
      else if (line >= m.end) lo = mid + 1;
      else return m;
    }
    return undefined;
  };
  const where = (line: number): string => {
    const text = lines[line] ?? "";
    const entry = map?.lines.findEntry(line, text.length - text.trimStart().length) as
      | { originalSource?: string; originalLine?: number }
      | undefined;
    if (map && entry?.originalSource !== undefined && entry.originalLine !== undefined) {
      const src = relative(map.root, resolve(map.base, entry.originalSource.replace(/^file:\/\//, "")));
      return `${src}:${entry.originalLine + 1}`;
    }
    return `${moduleAt(line)} (bundle line ${line + 1})`;
  };
  return {
    moduleAt,
    methodAt,
    methods,
    classes,
    lineCount: lines.length,
    lineText: (line) => (lines[line] ?? "").trim(),
    where,
  };
}

/** A kind of work, recognised by native function names or by source module. */
export interface KindRule {
  kind: string;
  /** Runtime functions (frames with no script) by name. */
  natives?: readonly string[];
  /** Source modules (bundle frames) or script URLs (workerd's built-in modules). */
  modules?: RegExp;
}

/**
 * The kinds this project's Worker spends time on. Order does not matter: the innermost frame
 * that matches one wins. A library without a rule here is its own kind, by package name.
 */
export const KIND_RULES: readonly KindRule[] = [
  {
    kind: "SQLite (sql.exec, cursors)",
    natives: ["exec", "toArray", "one", "raw", "next", "columnNames", "rowsRead", "rowsWritten", "databaseSize"],
    modules: /^mesh\/sql\//,
  },
  {
    kind: "storage API (KV, alarms)",
    natives: ["put", "delete", "deleteAll", "list", "getAlarm", "setAlarm", "deleteAlarm", "sync", "transaction"],
  },
  {
    kind: "WebSocket (send, attachments)",
    natives: ["send", "serializeAttachment", "deserializeAttachment", "getWebSockets", "acceptWebSocket", "accept"],
  },
  {
    kind: "actor stubs (idFromName, get)",
    natives: ["idFromName", "idFromString", "newUniqueId", "getByName"],
    modules: /^mesh\/remote\.ts$/,
  },
  { kind: "RPC result promises (then, catch)", natives: ["then", "catch", "finally"] },
  { kind: "msgpack (msgpackr, shared/codec.ts)", modules: /^(node_modules\/msgpackr\/|shared\/codec\.ts$)/ },
  { kind: "zod parsing", modules: /^node_modules\/zod\// },
  { kind: "JSON Schema validation (@cfworker/json-schema)", modules: /^node_modules\/@cfworker\/json-schema\// },
  { kind: "Hono routing and middleware", modules: /^node_modules\/hono\// },
  {
    kind: "crypto (jose, digests, random ids)",
    natives: ["randomUUID", "getRandomValues", "digest", "sign", "verify", "importKey", "exportKey", "timingSafeEqual"],
    modules: /^node_modules\/jose\//,
  },
  { kind: "HTTP bodies (text, json)", natives: ["text", "json", "arrayBuffer", "formData", "blob"] },
  { kind: "text encoding", natives: ["encode", "decode", "encodeInto"] },
  { kind: "rate-limit binding (limit())", modules: /^cloudflare-internal:ratelimit/ },
  { kind: "esbuild keepNames (__name)", modules: /^\(bundle\)$/ },
  { kind: "Miniflare's Node side (local only)", modules: /^node_modules\/miniflare\// },
];

/** How a profile's frames are read. */
export interface AttributionOptions {
  /**
   * A bundled Worker: frames of the script at this URL are named by the bundle's source modules
   * and classes; frames of other scripts are built-ins.
   */
  bundle?: { url: string; index: BundleIndex };
  /**
   * Unbundled modules (a Node process): frames of `file:` URLs under this folder are named by
   * their path in it.
   */
  root?: string;
  /** Source modules whose outermost frame means the Worker's fetch handler. */
  workerModules?: RegExp;
  /** The hop of the Worker's fetch handler. */
  workerHop?: string;
  /** The sampling interval the profile was taken with (µs). */
  intervalUs: number;
  /**
   * Names every sample of this profile as one hop (another isolate: Miniflare's entry worker,
   * its rate-limit simulator; a Node process): kinds are still read from the stack.
   */
  isolateHop?: string;
}

/** What a profile's time went to (ms). */
export interface Attribution {
  /** Every sample's time, special nodes included. */
  totalMs: number;
  /** Of which `(idle)`: the isolate's lock held while idle. */
  idleMs: number;
  byHop: Map<string, number>;
  byKind: Map<string, number>;
  /** `hop\tkind` → ms. */
  byHopKind: Map<string, number>;
  /** Self time of our own bundled code by bundle line (1-based): its function, source and text. */
  lines: Map<number, { fn: string; where: string; text: string; ms: number }>;
  samples: number;
}

export const SPECIAL = {
  gc: "(garbage collector)",
  program: "(program)",
  idle: "(idle)",
  root: "(root)",
} as const;

/** The package of a `node_modules/...` path (`zod`, `@cfworker/json-schema`). */
function packageOf(path: string): string | undefined {
  const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
  return m?.[1];
}

/** A frame with no kind of its own: a runtime function, or a built-in module's. */
function weakKind(f: CallFrame): string {
  return f.url === "" ? `runtime API ${f.functionName || "(unnamed)"}()` : `built-in JS: ${f.url}`;
}

function add(m: Map<string, number>, k: string, v: number): void {
  m.set(k, (m.get(k) ?? 0) + v);
}

/** Attributes every sample's time (see the module comment). */
export function attribute(profile: CpuProfile, opts: AttributionOptions): Attribution {
  const workerHop = opts.workerHop ?? "Worker fetch (HTTP API)";
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Self time per node first: a node's stack is the same for all of its samples.
  const weights = sampleWeights(profile, opts.intervalUs);
  const self = new Map<number, number>();
  (profile.samples ?? []).forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (weights[i] as number) / 1000));

  const inBundle = (f: CallFrame): boolean => opts.bundle !== undefined && f.url === opts.bundle.url;
  /** The source module of a frame of ours (bundled or under root); undefined for others. */
  const sourceOf = (f: CallFrame): string | undefined => {
    if (opts.bundle && f.url === opts.bundle.url) return opts.bundle.index.moduleAt(f.lineNumber);
    if (opts.root && f.url.startsWith("file:")) {
      const rel = relative(opts.root, fileURLToPath(f.url));
      if (!rel.startsWith("..")) return rel;
    }
    return undefined;
  };
  const isOwn = (f: CallFrame): boolean => {
    const src = sourceOf(f);
    return src !== undefined && !src.startsWith("node_modules/");
  };

  const kindOfFrame = (f: CallFrame): string | undefined => {
    if (f.url === "") {
      if (f.functionName.startsWith("RegExp: ")) return "regular expressions";
      return KIND_RULES.find((r) => r.natives?.includes(f.functionName))?.kind;
    }
    const mod = sourceOf(f) ?? f.url;
    const rule = KIND_RULES.find((r) => r.modules?.test(mod));
    if (rule) return rule.kind;
    const pkg = packageOf(mod);
    return pkg ? `library: ${pkg}` : undefined;
  };
  const classify = (stack: CallFrame[]): { hop: string; kind: string } => {
    const leaf = stack[0] as CallFrame;
    if (leaf.functionName === SPECIAL.gc && leaf.url === "") return { hop: opts.isolateHop ?? "GC", kind: "GC" };
    if (leaf.functionName === SPECIAL.program && leaf.url === "")
      return { hop: opts.isolateHop ?? "(program)", kind: "(program): V8 in the lock, no JS" };
    if (leaf.functionName === SPECIAL.idle && leaf.url === "")
      return { hop: opts.isolateHop ?? "(idle)", kind: "(idle)" };
    // Kind: the innermost known kind, looking no further out than the innermost frame of our
    // own code (a route handler under Hono is our code, not Hono's); a runtime function or
    // built-in our code calls directly is a kind of its own.
    let kind: string | undefined;
    let weak: CallFrame | undefined;
    for (const f of stack) {
      const k = kindOfFrame(f);
      if (k) {
        kind = k;
        break;
      }
      if (isOwn(f)) {
        kind = weak ? weakKind(weak) : `JS: ${sourceOf(f)}`;
        break;
      }
      if (sourceOf(f) === undefined) weak ??= f;
    }
    kind ??= weakKind(weak ?? leaf);
    if (opts.isolateHop) return { hop: opts.isolateHop, kind };
    // Hop: the outermost frame of ours.
    const outer = stack.findLast((f) => sourceOf(f) !== undefined);
    if (!outer) {
      const builtin = stack.findLast((f) => f.url !== "");
      return { hop: builtin ? `built-in JS (${builtin.url})` : "runtime, no JS caller", kind };
    }
    const mod = sourceOf(outer) as string;
    if (opts.workerModules?.test(mod)) return { hop: workerHop, kind };
    const m = inBundle(outer) ? opts.bundle?.index.methodAt(outer.lineNumber) : undefined;
    return { hop: m ? `${m.className}.${m.method}` : `JS: ${mod}`, kind };
  };

  const out: Attribution = {
    totalMs: 0,
    idleMs: 0,
    byHop: new Map(),
    byKind: new Map(),
    byHopKind: new Map(),
    lines: new Map(),
    samples: profile.samples?.length ?? 0,
  };
  for (const [id, ms] of self) {
    const stack: CallFrame[] = [];
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const node = byId.get(n);
      if (!node || (node.callFrame.functionName === SPECIAL.root && node.callFrame.url === "")) break;
      stack.push(node.callFrame);
    }
    out.totalMs += ms;
    if (stack.length === 0) continue;
    const { hop, kind } = classify(stack);
    if (kind === SPECIAL.idle) out.idleMs += ms;
    add(out.byHop, hop, ms);
    add(out.byKind, kind, ms);
    add(out.byHopKind, `${hop}\t${kind}`, ms);
    // Self time of our own bundled code, by line.
    const leaf = stack[0] as CallFrame;
    const node = byId.get(id) as ProfileNode;
    const index = opts.bundle?.index;
    if (index && inBundle(leaf) && isOwn(leaf) && node.positionTicks && node.positionTicks.length > 0) {
      const ticks = node.positionTicks.reduce((sum, p) => sum + p.ticks, 0);
      for (const p of node.positionTicks) {
        const prev = out.lines.get(p.line);
        const share = (ms * p.ticks) / ticks;
        if (prev) prev.ms += share;
        else {
          const m = index.methodAt(p.line - 1);
          out.lines.set(p.line, {
            fn: m ? `${m.className}.${m.method}` : leaf.functionName || "(anonymous)",
            where: index.where(p.line - 1),
            text: index.lineText(p.line - 1),
            ms: share,
          });
        }
      }
    }
  }
  return out;
}
