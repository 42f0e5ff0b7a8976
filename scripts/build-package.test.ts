import { describe, expect, it } from "vitest";
import { bareImports } from "./build-package.ts";

describe("bareImports", () => {
  it("finds the packages a built module imports by name, and no builtins, relative paths or comments", () => {
    const source = `import { z } from "zod";
import { createParser } from "eventsource-parser/stream";
import {
  a,
  b,
} from "@scope/pkg/sub";
import "side-effect";
export { x } from "./x.js";
import { readFileSync } from "node:fs";
const gifenc = createRequire(import.meta.url)("gifenc");
const late = await import("ws");
/**
 * @example
 * import { createClient } from "@floodgate/client";
 */
`;
    expect(bareImports(source)).toEqual(["@scope/pkg", "eventsource-parser", "gifenc", "side-effect", "ws", "zod"]);
  });
});
