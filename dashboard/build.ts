/**
 * Builds the operator's dashboard into the Worker's static assets (`[assets]` in wrangler.toml):
 * dashboard/src bundled and minified by esbuild into dist/assets/dashboard/, beside its page.
 * `npm run build:dashboard` runs it; so do `wrangler dev`/`deploy` (its `[build]` command),
 * `npm test` (pretest) and the test configuration, so a clean clone serves a built dashboard.
 *
 * @example
 * node dashboard/build.ts            # writes dist/assets/dashboard/{index.html,app.js,app.css,chunk-*.js}
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { build } from "esbuild";

const ROOT = resolve(import.meta.dirname, "..");
/** The `[assets]` directory of wrangler.toml. */
export const ASSETS_DIR = join(ROOT, "dist", "assets");
const OUT = join(ASSETS_DIR, "dashboard");

/**
 * Served with every asset of the dashboard: no script, style or connection from anywhere but
 * the edge itself (the page needs no CDN), and never framed. uPlot sizes its elements with
 * inline styles, hence `style-src 'unsafe-inline'`.
 */
const RULES = `  Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'
  X-Content-Type-Options: nosniff
  Referrer-Policy: no-referrer
`;
const HEADERS = `/dashboard\n${RULES}\n/dashboard/*\n${RULES}`;

/**
 * Writes a file whole or not at all: a reader (wrangler serving the assets, another stack
 * building the same sources at the same time) never sees it half written or missing.
 */
function replace(path: string, contents: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, path);
}

/**
 * Builds the dashboard; answers the JavaScript's size in bytes, before compression, all chunks
 * together. Several builds may run at once (each local stack's `wrangler dev` runs one): each
 * file is replaced atomically, and only files the build no longer makes are removed.
 */
export async function buildDashboard(): Promise<{ jsBytes: number }> {
  mkdirSync(OUT, { recursive: true });
  const result = await build({
    entryPoints: [
      { in: join(ROOT, "dashboard", "src", "main.ts"), out: "app" },
      { in: join(ROOT, "dashboard", "src", "app.css"), out: "app" },
    ],
    bundle: true,
    minify: true,
    format: "esm",
    // Chunks for what is imported on demand (the chart's uPlot), so the sign-in loads without it.
    splitting: true,
    chunkNames: "chunk-[hash]",
    target: "es2022",
    outdir: OUT,
    write: false,
    logLevel: "warning",
    legalComments: "none",
  });
  const made = new Set(["index.html"]);
  for (const file of result.outputFiles) {
    made.add(basename(file.path));
    replace(file.path, file.contents);
  }
  replace(join(OUT, "index.html"), readFileSync(join(ROOT, "dashboard", "index.html")));
  replace(join(ASSETS_DIR, "_headers"), HEADERS);
  for (const name of readdirSync(OUT)) {
    if (!made.has(name) && !name.endsWith(".tmp")) rmSync(join(OUT, name), { force: true });
  }
  const js = result.outputFiles.filter((f) => f.path.endsWith(".js"));
  return { jsBytes: js.reduce((n, f) => n + f.contents.byteLength, 0) };
}

if (import.meta.main) {
  const { jsBytes } = await buildDashboard();
  console.log(`dashboard built: ${OUT} (${(jsBytes / 1024).toFixed(1)} KiB of JavaScript)`);
}
