/**
 * The operator's dashboard in a real browser (playwright-core driving Debian's Chromium) against
 * the real local stack with one agent: sign-in, models, tiers and agents, a job submitted through
 * the API seen in the inspector and finishing, a wrong admin key refused. Screenshots go to
 * test-output/dashboard/ (git-ignored) to be looked at.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api, ROOT, startStack, type Stack } from "./stack.ts";

const CHROMIUM = process.env.FLOODGATE_CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = join(ROOT, "test-output", "dashboard");
/**
 * The page's budget of gzipped JavaScript. Its other budget, usable within a second of a first
 * load, is a timing: `npm run bench -- dashboard` measures it (bench/RESULTS.md).
 */
const JS_BUDGET_BYTES = 200 * 1024;

let stack: Stack;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `the dashboard's browser test needs Chromium at ${CHROMIUM}: run \`bash scripts/setup.sh\` ` +
        "(or `sudo apt-get install -y chromium`), or set FLOODGATE_CHROMIUM to another Chromium",
    );
  }
  mkdirSync(SHOTS, { recursive: true });
  stack = await startStack({ agents: 1 });
  // --no-sandbox: Chromium's sandbox refuses to start as root, which CI containers are.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

afterAll(async () => {
  await browser?.close();
  await stack?.stop("SIGTERM");
});

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.getByLabel("Admin key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

describe("the dashboard in a browser", () => {
  it("the page's JavaScript is at most 200 KB compressed, and /dashboard is the page itself", async () => {
    // Every script of the page, the chunk loaded with the chart included.
    const dir = join(ROOT, "dist", "assets", "dashboard");
    const scripts = readdirSync(dir).filter((f) => f.endsWith(".js"));
    expect(scripts).toContain("app.js");
    const gz = scripts.reduce((n, f) => n + gzipSync(readFileSync(join(dir, f)), { level: 9 }).length, 0);
    expect(gz).toBeLessThanOrEqual(JS_BUDGET_BYTES);
    // No redirect on the way, and the page's own policy: nothing from anywhere but the edge.
    const res = await fetch(`${stack.config.url}/dashboard`, { redirect: "manual" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
    expect(await res.text()).toContain('src="/dashboard/app.js"');
  });

  it("a wrong admin key is refused and nothing is kept", async () => {
    const page = await browser.newPage();
    await page.goto(`${stack.config.url}/dashboard`);
    await signIn(page, "fga_not-the-admin-key");
    await expect.poll(() => page.getByTestId("signin-error").textContent()).toContain("refused");
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await shot(page, "signin-refused");
    await page.close();
  });

  it("signed in, the operator sees models, tiers and agents live; a submitted job appears within 2 s and finishes", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const requests: string[] = [];
    page.on("request", (r) => requests.push(r.url()));
    await page.goto(`${stack.config.url}/dashboard`);
    await signIn(page, stack.config.admin_key);
    await page.getByTestId("live").filter({ hasText: "live" }).waitFor({ timeout: 10_000 });
    // The key lives in the tab's session only, never in a URL.
    expect(await page.evaluate(() => sessionStorage.getItem("floodgate.admin-key"))).toBe(stack.config.admin_key);
    await page.locator('[data-testid="models"] tr[data-model="demo"]').waitFor();
    const tiers = await page
      .locator('[data-testid="tiers"] tr[data-model="demo"]')
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-tier")));
    expect(tiers).toEqual(expect.arrayContaining(["plus"]));
    await page.locator('[data-testid="wait-chart"] canvas').waitFor();
    await shot(page, "overview");

    // Keys switch panels: 2 is the agents.
    await page.keyboard.press("2");
    await page.locator('[data-testid="agents"] tr[data-agent]').first().waitFor({ timeout: 30_000 });
    expect(await page.locator('[data-testid="agents"]').textContent()).toContain("demo");
    await shot(page, "agents");

    // A job submitted through the API, found in the inspector within 2 s, followed until it ends.
    const sub = await api<{ id: string }>(stack, "POST", "/v1/models/demo/jobs", {
      input: { prompt: "a lighthouse", frames: 4, size: 64, steps: 4 },
    });
    expect(sub.status).toBe(202);
    const t0 = Date.now();
    await page.keyboard.press("/");
    await page.getByLabel("Job id or account id").fill(sub.body.id);
    await page.keyboard.press("Enter");
    await page.getByTestId("job-status").waitFor({ timeout: 2000 });
    expect(Date.now() - t0).toBeLessThanOrEqual(2000);
    await page.locator('[data-testid="job"][data-status="succeeded"]').waitFor({ timeout: 60_000 });
    expect(await page.locator('[data-testid="attempts"]').textContent()).toContain("succeeded");
    const events = await page.locator('[data-testid="events"] li').allTextContents();
    expect(events[0]).toContain("created in tier plus");
    expect(events.some((e) => /attempt 1 leased to agt_\w+ \(local\)/.test(e))).toBe(true);
    expect(events.at(-1)).toContain("job succeeded");
    // Outputs with their units and signed links.
    const gif = page.locator('[data-testid="outputs"] tr').filter({ hasText: "animation.gif" });
    expect(await gif.textContent()).toMatch(/image\/gif[\d.]+ (B|KB)$/);
    expect(await gif.locator("a").getAttribute("href")).toContain("/v1/files/");
    await shot(page, "job");

    // Back on the overview (Escape leaves the field), the finished job shows in the model's rate.
    await page.keyboard.press("Escape");
    await page.keyboard.press("1");
    const demoRate = page.locator('[data-testid="models"] tr[data-model="demo"] td').first();
    await expect.poll(() => demoRate.textContent(), { timeout: 5000 }).toMatch(/^[0-9.]+ jobs\/min$/);

    // The rollouts panel: each model's desired versions against its agents', or none yet.
    await page.keyboard.press("3");
    await page.locator('[data-testid="rollouts"], [data-testid="no-rollouts"]').first().waitFor();
    await shot(page, "rollouts");

    // The capacity panel reads its endpoint, or says this edge has none.
    await page.keyboard.press("4");
    await page.locator('[data-testid="not-available"], [data-testid="capacity"]').first().waitFor();
    await shot(page, "capacity");

    // One live stream for the whole tab, never a key in a URL.
    expect(requests.filter((u) => u.endsWith("/v1/admin/live"))).toHaveLength(1);
    expect(requests.some((u) => u.includes(stack.config.admin_key))).toBe(false);
    // Dark mode follows the system's; a reload keeps the tab signed in (the key is in its session),
    // and the chart is drawn again in the dark colours.
    await page.emulateMedia({ colorScheme: "dark" });
    await page.keyboard.press("1");
    await page.reload();
    expect(page.url()).toMatch(/\/dashboard#overview$/);
    await page.locator('[data-testid="wait-chart"] canvas').waitFor();
    await shot(page, "overview-dark");

    // Last, as it takes the agent out of service: drain it from the agents panel.
    await page.keyboard.press("2");
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Drain" }).first().click();
    await page.getByRole("status").filter({ hasText: "is draining" }).waitFor();
    await shot(page, "agents-drained");
    await page.close();
  });
});
