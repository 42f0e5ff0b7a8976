import { describe, expect, it } from "vitest";
import { jobEventOf, webhookUrlProblem } from "./webhooks.ts";

describe("webhook addresses", () => {
  it("a public https URL is allowed", () => {
    expect(webhookUrlProblem("https://hooks.example.com/floodgate", false)).toBeUndefined();
    expect(webhookUrlProblem("https://93.184.216.34/hook", false)).toBeUndefined();
    expect(webhookUrlProblem("https://[2606:4700::1111]/hook", false)).toBeUndefined();
  });

  it("private, loopback, link-local, CGNAT, metadata and unspecified addresses are refused, mapped forms included", () => {
    for (const url of [
      "https://10.1.2.3/",
      "https://172.16.0.1/",
      "https://192.168.1.1/",
      "https://127.0.0.1/",
      "https://0x7f000001/",
      "https://2130706433/",
      "https://169.254.169.254/latest/meta-data",
      "https://100.64.0.1/",
      "https://0.0.0.0/",
      "https://[::1]/",
      "https://[::]/",
      "https://[fd00::1]/",
      "https://[fe80::1]/",
      "https://[::ffff:10.0.0.1]/",
      "https://[::ffff:169.254.169.254]/",
      "https://224.0.0.1/",
    ])
      expect({ url, problem: webhookUrlProblem(url, false) }).toMatchObject({
        problem: expect.stringMatching(/may not reach/),
      });
  });

  it("local and internal names are refused", () => {
    for (const url of [
      "https://localhost/",
      "https://app.localhost/",
      "https://metadata.google.internal/",
      "https://db.internal/",
      "https://printer.local/",
      "https://intranet/",
    ])
      expect({ url, problem: webhookUrlProblem(url, false) }).toMatchObject({
        problem: expect.stringMatching(/private host/),
      });
  });

  it("plain http and credentials in the URL are refused", () => {
    expect(webhookUrlProblem("http://hooks.example.com/", false)).toMatch(/https only/);
    expect(webhookUrlProblem("https://user:pw@hooks.example.com/", false)).toMatch(/credentials/);
  });

  it("the local-development switch admits http and loopback only, never private or metadata addresses", () => {
    expect(webhookUrlProblem("http://127.0.0.1:8080/hook", true)).toBeUndefined();
    expect(webhookUrlProblem("http://localhost:8080/hook", true)).toBeUndefined();
    expect(webhookUrlProblem("http://[::1]:8080/hook", true)).toBeUndefined();
    expect(webhookUrlProblem("http://10.0.0.1/hook", true)).toMatch(/may not reach/);
    expect(webhookUrlProblem("http://169.254.169.254/", true)).toMatch(/may not reach/);
  });

  it("a job status names its event; back in the queue names none", () => {
    expect(jobEventOf("succeeded")).toBe("job.succeeded");
    expect(jobEventOf("running")).toBe("job.running");
    expect(jobEventOf("queued")).toBeUndefined();
  });
});
