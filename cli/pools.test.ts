import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { UsageError } from "./flags.ts";
import { poolsText, readPoolsFile } from "./pools.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "fg-pools-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function file(text: string): string {
  writeFileSync(join(dir, "pools.yaml"), text);
  return "pools.yaml";
}

describe("pools files", () => {
  it("a pools file takes defaults for what it leaves out", () => {
    const { file: parsed } = readPoolsFile(
      dir,
      file("pools:\n  cloud-h100:\n    models: [demo]\n    max: 64\n    command: ./scale-cloud.sh\n"),
    );
    expect(parsed.pools["cloud-h100"]).toMatchObject({
      models: ["demo"],
      min: 0,
      max: 64,
      priority: 100,
      command: "./scale-cloud.sh",
      step_up: 16,
      step_down: 1,
      window_s: 300,
      burst_window_s: 10,
      cooldown_s: 300,
      startup_s: 60,
    });
  });

  it("a mistake is named by its file, line and column", () => {
    const text = "pools:\n  cloud:\n    models: [demo]\n    max: -1\n    command: ./x.sh\n";
    expect(() => readPoolsFile(dir, file(text))).toThrow(/^pools\.yaml:4:10: pools\.cloud\.max: /);
    const unknown = "pools:\n  cloud:\n    models: [demo]\n    max: 2\n    command: ./x.sh\n    maximum: 3\n";
    expect(() => readPoolsFile(dir, file(unknown))).toThrow(/^pools\.yaml:6:5: pools\.cloud\.maximum: /);
    const both =
      "pools:\n  cloud:\n    models: [demo]\n    max: 2\n    command: ./x.sh\n    webhook: https://h.test/\n";
    expect(() => readPoolsFile(dir, file(both))).toThrow(/either a command or a webhook/);
    expect(() => readPoolsFile(dir, file(""))).toThrow(UsageError);
  });

  it("status shows each pool and its calls with their answers", () => {
    const text = poolsText(
      {
        pools: [
          {
            name: "cloud",
            spec: readPoolsFile(dir, file("pools:\n  cloud:\n    models: [demo]\n    max: 4\n    command: ./x.sh\n"))
              .file.pools.cloud!,
            desired: 2,
            connected: 1,
            busy: 1,
            calls: [
              {
                id: 7,
                pool: "cloud",
                desired: 2,
                remove: [],
                reason: "need 2",
                created_at: "2025-01-01T00:00:50.000Z",
                sent_at: "2025-01-01T00:00:51.000Z",
                answered_at: "2025-01-01T00:00:52.000Z",
                ok: true,
                answer: "exit 0\nstarted",
              },
            ],
          },
        ],
      },
      Date.parse("2025-01-01T00:01:00.000Z"),
    );
    expect(text).toMatch(/cloud +demo +0 +4 +2 +1 +1 +command \.\/x\.sh/);
    expect(text).toMatch(/cloud +7 +10 s ago +2 +- +ok +exit 0 started/);
  });
});
