import { describe, expect, it } from "vitest";
import { SseParser, type SseMessage } from "./sse.ts";

function parseAll(chunks: string[]): { messages: SseMessage[]; parser: SseParser } {
  const parser = new SseParser();
  const messages = chunks.flatMap((c) => parser.feed(c));
  return { messages, parser };
}

const STREAM =
  '\uFEFFretry: 1500\n: a comment\nid: g.1\nevent: status\ndata: {"a":1}\n\n' +
  "id: g.2\r\nevent: progress\r\ndata: line one\r\ndata:line two\r\n\r\n" +
  "event: log\rdata:  two spaces\r\r" +
  "data\n\n";

describe("SseParser", () => {
  it("dispatches id, event and data on a blank line, joining data lines with LF", () => {
    const { messages, parser } = parseAll([STREAM]);
    expect(messages).toEqual([
      { id: "g.1", event: "status", data: '{"a":1}' },
      { id: "g.2", event: "progress", data: "line one\nline two" },
      // The id persists across messages; one leading space is dropped, the second kept.
      { id: "g.2", event: "log", data: " two spaces" },
      // A field without a colon has an empty value; the event name defaults to "message".
      { id: "g.2", event: "message", data: "" },
    ]);
    expect(parser.retryMs).toBe(1500);
    expect(parser.lastEventId).toBe("g.2");
  });

  it("gives the same messages however the stream is cut into chunks, CR LF split across chunks included", () => {
    const whole = parseAll([STREAM]).messages;
    expect(parseAll([...STREAM]).messages).toEqual(whole);
    for (let cut = 1; cut < STREAM.length; cut++) {
      expect(parseAll([STREAM.slice(0, cut), "", STREAM.slice(cut)]).messages).toEqual(whole);
    }
  });

  it("updates the last event id on a block without data, and dispatches nothing for it", () => {
    const { messages, parser } = parseAll(["id: g.7\n\n", "event: status\n\n"]);
    expect(messages).toEqual([]);
    expect(parser.lastEventId).toBe("g.7");
  });

  it("ignores an id containing NUL, a non-numeric retry and unknown fields", () => {
    const { messages, parser } = parseAll(["id: g.1\ndata: x\n\n", "id: bad\0id\nretry: 10s\nfoo: bar\ndata: y\n\n"]);
    expect(messages.map((m) => m.id)).toEqual(["g.1", "g.1"]);
    expect(parser.retryMs).toBeUndefined();
  });

  it("waits for the blank line: a message cut off by the end of the input is not dispatched", () => {
    const { messages } = parseAll(["id: g.1\nevent: status\ndata: {}\n"]);
    expect(messages).toEqual([]);
  });

  it("after reset, forgets a half-received message but keeps the last event id", () => {
    const parser = new SseParser();
    parser.feed("id: g.1\ndata: a\n\nid: g.2\ndata: half");
    parser.reset();
    expect(parser.lastEventId).toBe("g.1");
    expect(parser.feed("data: b\n\n")).toEqual([{ id: "g.1", event: "message", data: "b" }]);
  });

  it("dispatches nothing for comments, keep-alives and blocks of unknown fields alone", () => {
    const { messages, parser } = parseAll([": keep-alive\n\n", ":\n\n", "foo: bar\nbaz\n\n"]);
    expect(messages).toEqual([]);
    expect(parser.lastEventId).toBe("");
  });

  it("clears the last event id on an empty id field, and names an event with an empty event field message", () => {
    const { messages, parser } = parseAll(["id: g.1\nevent: log\ndata: a\n\n", "id\nevent:\ndata: b\n\n"]);
    expect(messages).toEqual([
      { id: "g.1", event: "log", data: "a" },
      { id: "", event: "message", data: "b" },
    ]);
    expect(parser.lastEventId).toBe("");
  });

  it("drops a byte order mark only at the start of a stream, and again after reset", () => {
    const parser = new SseParser();
    expect(parser.feed("\uFEFFdata: a\n\n")).toEqual([{ id: "", event: "message", data: "a" }]);
    // Mid-stream it is part of the field name, which is then unknown.
    expect(parser.feed("\uFEFFdata: b\n\n")).toEqual([]);
    parser.reset();
    expect(parser.feed("\uFEFFdata: c\n\n")).toEqual([{ id: "", event: "message", data: "c" }]);
  });
});
