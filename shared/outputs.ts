/**
 * What a model's outputs may be, and how they are stored: the `outputs` section of a model's
 * configuration (required names, minimum count, a content-type allow-list, size caps), the
 * part sizes of an upload, the media types served inline, and the object keys under which a
 * job's files live in R2. The edge checks every upload and every succeeded `job.results` entry against it
 * (edge/routes/uploads.ts, mesh/outputs.ts); agents read the part sizes.
 */
import { z } from "zod";

/** Most outputs one attempt may have (its success in `job.results` carries them all). */
export const MAX_OUTPUTS = 32;

/** An output's file name, unique within an attempt (`OutputRecord.name` in shared/wire.ts). */
export const OutputName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/)
  .describe("File name: 1–64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit; one output per name.");

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** R2 multipart parts must be at least 5 MiB, except the last. */
export const MIN_PART_BYTES = 5 * MiB;
/** Largest part the edge takes in one request (bytes). */
export const MAX_PART_BYTES = 64 * MiB;
/** The part size an upload uses when its start names none (bytes). */
export const DEFAULT_PART_BYTES = 8 * MiB;
/** Most parts one upload has (R2's multipart limit). */
export const MAX_UPLOAD_PARTS = 10_000;

/** Parts an upload of `size` bytes has when cut in parts of `partBytes` (an empty one has one). */
export function partCount(size: number, partBytes: number): number {
  return Math.max(1, Math.ceil(size / partBytes));
}

/** The exact length of part `n` (1-based) of an upload of `size` bytes in parts of `partBytes`. */
export function partLength(size: number, partBytes: number, n: number): number {
  const parts = partCount(size, partBytes);
  return n < parts ? partBytes : size - (parts - 1) * partBytes;
}
/**
 * Largest output the edge takes (bytes): it reads every output back once to hash it, and a
 * Worker's CPU time bounds how much it can read in one request.
 */
export const MAX_OUTPUT_BYTES = 5 * GiB;

/**
 * The content types outputs may have when a model names none: media a browser shows without
 * running anything, and plain data. `text/html`, `image/svg+xml` and the like are left out:
 * they run scripts when opened.
 */
export const SAFE_MEDIA_TYPES: readonly string[] = [
  "image/png",
  "image/gif",
  "image/jpeg",
  "image/webp",
  "video/mp4",
  "video/webm",
  "application/json",
  "text/plain",
];

/**
 * Media served inline (`Content-Disposition: inline`); every other type is served as an
 * attachment, so a browser never renders it in the edge's origin.
 */
export const INLINE_MEDIA_TYPES: ReadonlySet<string> = new Set([
  "image/png",
  "image/gif",
  "image/jpeg",
  "image/webp",
  "image/avif",
  "video/mp4",
  "video/webm",
]);

/** A media type without parameters, lowercase (RFC 9110 §8.3.1 token characters). */
export const MediaType = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$/,
    "a media type such as image/png (lowercase, no parameters)",
  );

/** A content type's media type: what comes before any `;`, trimmed and lowercased. */
export function mediaType(contentType: string): string {
  return (contentType.split(";")[0] ?? "").trim().toLowerCase();
}

/**
 * The `outputs` section of a model's configuration. Every field has a default, and a model
 * registered without the section gets all of them (no output required).
 */
export const OutputsConfig = z
  .strictObject({
    /** Output names every successful attempt must produce. */
    required: z.array(OutputName).max(MAX_OUTPUTS).default([]),
    /** Fewest outputs a successful attempt has (besides `required`). */
    min: z.number().int().min(0).max(MAX_OUTPUTS).default(0),
    /** Media types outputs may have; an upload of any other type is refused (415). */
    content_types: z
      .array(MediaType)
      .min(1)
      .max(64)
      .default([...SAFE_MEDIA_TYPES]),
    /** Largest output (bytes). */
    max_bytes: z
      .number()
      .int()
      .min(1)
      .max(MAX_OUTPUT_BYTES)
      .default(256 * MiB),
    /** Largest total of one attempt's outputs (bytes). */
    max_job_bytes: z
      .number()
      .int()
      .min(1)
      .max(MAX_OUTPUTS * MAX_OUTPUT_BYTES)
      .default(1 * GiB),
  })
  .refine((o) => new Set(o.required).size === o.required.length, {
    message: "outputs.required names an output twice",
    path: ["required"],
  });
export type OutputsConfig = z.input<typeof OutputsConfig>;
export type OutputPolicy = z.output<typeof OutputsConfig>;

/**
 * A model's output policy with every default filled in; `undefined` (a model registered
 * without the section) gets the defaults. Stored configurations were validated when they were
 * registered, so this only fills what they left out.
 */
export function outputPolicy(config: OutputsConfig | undefined): OutputPolicy {
  const parsed = OutputsConfig.safeParse(config ?? {});
  return parsed.success ? parsed.data : OutputsConfig.parse({});
}

/** Where a job's output files live: `outputs/<job>/` or, with an epoch, one attempt's. */
export function outputsPrefix(jobId: string, epoch?: number): string {
  return epoch === undefined ? `outputs/${jobId}/` : `outputs/${jobId}/${epoch}/`;
}

/** The key of one output of one attempt. */
export function outputKey(jobId: string, epoch: number, name: string): string {
  return `${outputsPrefix(jobId, epoch)}${name}`;
}

/**
 * Where the edge keeps a marker per started upload (the R2 binding cannot list multipart
 * uploads): `uploads/<job>/` or, with an epoch, one attempt's.
 */
export function uploadsPrefix(jobId: string, epoch?: number): string {
  return epoch === undefined ? `uploads/${jobId}/` : `uploads/${jobId}/${epoch}/`;
}

/** The marker of the upload of one output of one attempt. */
export function uploadMarkerKey(jobId: string, epoch: number, name: string): string {
  return `${uploadsPrefix(jobId, epoch)}${name}`;
}

/** What a marker says of its upload (R2 custom metadata: strings only). */
export interface UploadMarker {
  /** R2's multipart upload id. */
  upload_id: string;
  /** The output's key. */
  key: string;
  /** The size announced at start (bytes, decimal). */
  size: string;
  /** "1" once the upload completed. */
  done?: string;
}
