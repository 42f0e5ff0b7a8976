// oxlint-disable-next-line no-restricted-imports -- a test may read the docs and the source tree; shared/ code may not
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES, ERROR_WHEN } from "./errors.ts";
import { docRegions, fillRegions } from "./golden/protocol-doc.ts";
import { CLOSE, CLOSE_WHEN } from "./wire.ts";

const root = new URL("../", import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, root), "utf8");

/** Markdown with table cells trimmed, so column padding (the formatter's business) does not count. */
function unpadded(markdown: string): string {
  return markdown
    .split("\n")
    .map((line) => {
      if (!line.startsWith("|")) return line.trimEnd();
      const cells = line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim());
      return `|${cells.map((c) => (/^:?-+:?$/.test(c) ? "---" : c)).join("|")}|`;
    })
    .join("\n");
}

/** The code the edge runs (tests and the golden files' example builders left out), comments stripped. */
function sources(): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  for (const dir of ["edge", "mesh", "shared"]) {
    for (const entry of readdirSync(new URL(dir, root), { recursive: true, withFileTypes: true })) {
      const path = `${entry.parentPath.slice(new URL(".", root).pathname.length)}/${entry.name}`;
      if (!entry.isFile() || !path.endsWith(".ts") || path.endsWith(".test.ts") || path.endsWith(".d.ts")) continue;
      if (path.startsWith("shared/golden/")) continue;
      const text = read(path)
        .replace(/\/\*[\s\S]*?\*\//g, "")
        .replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
      out.push({ path, text });
    }
  }
  return out;
}

/** Every error code the code can send: the codes of `new FloodgateError(…)`, `fail(…)` and failure values. */
function errorCodesSent(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const add = (code: string, path: string): void => {
    found.set(code, [...(found.get(code) ?? []), path]);
  };
  for (const { path, text } of sources()) {
    // The first argument, ternaries included: `new FloodgateError(cond ? "forbidden" : "unauthorized", …)`.
    for (const m of text.matchAll(/\b(?:new FloodgateError|fail)\(\s*([^,]*?),/g)) {
      for (const lit of (m[1] ?? "").matchAll(/"([a-z_]+)"/g)) add(lit[1] ?? "", path);
    }
    for (const m of text.matchAll(/\bok:\s*false(?:\s+as\s+const)?,\s*code:\s*"([a-z_]+)"/g)) add(m[1] ?? "", path);
  }
  return found;
}

/** Every close code the code can close an agent's connection with, by name or by number. */
function closeCodesSent(): { names: Map<string, string[]>; numbers: Set<number> } {
  const names = new Map<string, string[]>();
  const numbers = new Set<number>();
  for (const { path, text } of sources()) {
    for (const m of text.matchAll(/\bCLOSE\.([a-z_]+)/g))
      names.set(m[1] ?? "", [...(names.get(m[1] ?? "") ?? []), path]);
    for (const m of text.matchAll(/\.close\(\s*(\d+)/g)) numbers.add(Number(m[1]));
  }
  return { names, numbers };
}

describe("docs/protocol.md and docs/runner-protocol.md", () => {
  it.each(Object.entries(docRegions()))(
    "%s's generated parts are what test/gen-golden.ts writes from the schemas now",
    (doc, regions) => {
      const onDisk = read(doc);
      expect(unpadded(fillRegions(onDisk, regions, doc)), `${doc} is stale: run npx node test/gen-golden.ts`).toBe(
        unpadded(onDisk),
      );
    },
  );

  it("every field of every generated table has a description", () => {
    const undescribed = Object.values(docRegions())
      .flatMap((regions) => Object.values(regions))
      .flatMap((body) => unpadded(body).split("\n"))
      .filter((line) => line.startsWith("|`") && line.endsWith("||"));
    expect(undescribed).toEqual([]);
  });
});

describe("the error-code and close-code tables are what the code sends", () => {
  it("every error code the edge, the actors and shared/ raise is in the table, and every entry is raised somewhere", () => {
    const sent = errorCodesSent();
    expect([...sent.keys()].filter((c) => !(c in ERROR_CODES))).toEqual([]);
    expect(Object.keys(ERROR_CODES).filter((c) => !sent.has(c))).toEqual([]);
    expect(Object.keys(ERROR_WHEN).sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it("the scan finds codes in each form they are raised in", () => {
    const sent = errorCodesSent();
    // `new FloodgateError("stale_lease", …)`, a ternary's both arms, `fail("overloaded", …)` and a failure value.
    expect(sent.get("stale_lease")).toContain("edge/routes/uploads.ts");
    expect(sent.get("forbidden")).toContain("edge/auth/index.ts");
    expect(sent.get("unauthorized")).toContain("edge/auth/index.ts");
    expect(sent.get("overloaded")).toContain("mesh/scheduler/core.ts");
    expect(sent.get("internal")).toContain("edge/routes/jobs.ts");
  });

  it("every close code the actors close an agent's connection with is in the table, and every entry is used", () => {
    const { names, numbers } = closeCodesSent();
    expect([...names.keys()].filter((n) => !(n in CLOSE))).toEqual([]);
    expect(Object.keys(CLOSE).filter((n) => !names.has(n))).toEqual([]);
    expect(Object.keys(CLOSE_WHEN).sort()).toEqual(Object.keys(CLOSE).sort());
    // Literal numbers: 1000 (a normal close, RFC 6455 §7.4.1) is no verdict and not in the table.
    const known = new Set<number>([1000, ...Object.values(CLOSE)]);
    expect([...numbers].filter((n) => !known.has(n))).toEqual([]);
    expect(names.get("protocol")).toContain("mesh/agent/frames.ts");
  });
});
