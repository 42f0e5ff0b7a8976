import { describe, expect, it } from "vitest";
import { ModelConfigBody } from "./api.ts";
import { DEMO_MODEL_CONFIG, REFERENCE_MODEL_CONFIG } from "./models.ts";
import { mediaType, OutputsConfig } from "./outputs.ts";

describe("the outputs section of a model's configuration", () => {
  it("refuses a name required twice, a media type with parameters or capitals, and caps out of range", () => {
    const accepted = [
      { required: ["a.png", "a.png"] },
      { required: ["A.png"] },
      { content_types: ["text/plain; charset=utf-8"] },
      { content_types: ["Image/PNG"] },
      { content_types: [] },
      { max_bytes: 0 },
      { min: 33 },
      { extra: true },
    ].filter((bad) => OutputsConfig.safeParse(bad).success);
    expect(accepted).toEqual([]);
  });

  it("the built-in models require the files their runners always produce, in their own media types", () => {
    for (const config of [DEMO_MODEL_CONFIG, REFERENCE_MODEL_CONFIG]) {
      const parsed = ModelConfigBody.parse(config);
      expect(parsed.outputs?.required).toEqual(["animation.gif", "last.png", "params.json"]);
      expect(parsed.outputs?.content_types).toEqual(["image/gif", "image/png", "video/mp4", "application/json"]);
    }
  });

  it("a content type's media type drops parameters and case", () => {
    expect(mediaType("Text/HTML; charset=utf-8")).toBe("text/html");
    expect(mediaType(" image/png ")).toBe("image/png");
  });
});
