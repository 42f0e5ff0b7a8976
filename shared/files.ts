/**
 * Input files: media an account uploads (`POST /v1/files`) for its jobs to read. The wire
 * shapes of the file routes, the content types an input may have, the keyword that marks a
 * field of a model's input schema as a file, and where the bytes live in R2. The edge
 * (edge/routes/inputs.ts), the account actor (mesh/account/files.ts), the agent
 * (gpu-agent/inputs.ts), the SDK and the CLI import it.
 */
import { z } from "zod";
import { DEFAULT_PART_BYTES, MAX_PART_BYTES, MediaType, MIN_PART_BYTES } from "./outputs.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** A file id: `file_` and 16 base-32 characters (shared/ids.ts `newId("file")`). */
export const FileId = z
  .string()
  .regex(/^file_[0-9a-z]{16}$/, "a file id is file_ and 16 of 0-9, a-z")
  .describe("An input file's id, as `POST /v1/files` answered it.");
export type FileId = z.infer<typeof FileId>;

/** Whether a string is shaped like a file id. */
export function isFileId(s: unknown): s is string {
  return typeof s === "string" && FileId.safeParse(s).success;
}

/**
 * The keyword that marks a property of a model's input schema as a file: `"x-floodgate-file":
 * true` on a top-level string property. A job passes a file id there; the runner gets a local
 * path in its place.
 */
export const FILE_KEYWORD = "x-floodgate-file";

/**
 * The fields of an input schema marked as files (top-level properties with
 * {@link FILE_KEYWORD} `true`), sorted; empty for a model that takes none.
 *
 * @example
 * fileFields({ type: "object", properties: { video: { type: "string", "x-floodgate-file": true } } }); // ["video"]
 */
export function fileFields(schema: unknown): string[] {
  const props = (schema as { properties?: unknown } | null)?.properties;
  if (typeof props !== "object" || props === null || Array.isArray(props)) return [];
  return Object.entries(props as Record<string, unknown>)
    .filter(([, p]) => typeof p === "object" && p !== null && (p as Record<string, unknown>)[FILE_KEYWORD] === true)
    .map(([k]) => k)
    .sort();
}

/** Media types an input file may have: images and video a runner can decode. */
export const INPUT_CONTENT_TYPES: readonly string[] = [
  "image/png",
  "image/jpeg",
  "image/webp",
  "image/gif",
  "video/mp4",
  "video/quicktime",
  "video/webm",
];

/** The largest input file when the edge's `INPUT_FILE_MAX_BYTES` is unset (bytes). */
export const DEFAULT_INPUT_FILE_MAX_BYTES = 2 * GiB;
/** How long an input file is kept when the edge's `INPUT_FILE_RETENTION_S` is unset (s). */
export const DEFAULT_INPUT_FILE_RETENTION_S = 7 * 86400;
/** Files one listing page answers at most. */
export const MAX_FILE_PAGE = 100;

/** The name of a file as its uploader gave it: shown back, never used as a path. */
export const FileName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[^\p{Cc}/\\]+$/u, "a file name without slashes or control characters");

export const FileCreate = z.strictObject({
  name: FileName.describe("The file's name (shown back; the runner's local file keeps only its extension)."),
  content_type: MediaType.describe(`One of ${INPUT_CONTENT_TYPES.join(", ")}.`),
  size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).describe("The file's size (bytes)."),
  part_bytes: z
    .number()
    .int()
    .min(MIN_PART_BYTES)
    .max(MAX_PART_BYTES)
    .optional()
    .describe(`The length of every part but the last (bytes); ${DEFAULT_PART_BYTES / MiB} MiB when absent.`),
});
export type FileCreate = z.infer<typeof FileCreate>;

export const FileStatus = z.enum(["uploading", "ready"]);
export type FileStatus = z.infer<typeof FileStatus>;

export const FileView = z.object({
  id: FileId,
  name: z.string(),
  content_type: z.string(),
  size: z.number().int(),
  status: FileStatus.describe("`uploading` until its upload completes; only a `ready` file may be named by a job."),
  sha256: z.string().nullable().describe("Hex SHA-256 of the stored bytes, once ready."),
  part_bytes: z.number().int().describe("The length of every part but the last (bytes)."),
  parts: z.number().int().describe("How many parts the upload has."),
  created_at: z.string(),
  expires_at: z.string().describe("When the file and its bytes are deleted (ISO 8601)."),
});
export type FileView = z.infer<typeof FileView>;

export const FileList = z.object({ files: z.array(FileView), next_cursor: z.string().nullable() });
export type FileList = z.infer<typeof FileList>;

export const FileListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(MAX_FILE_PAGE).default(50),
  cursor: FileId.optional().describe("The `next_cursor` of the previous page."),
});

export const StoredPart = z.object({ part_number: z.number().int(), size: z.number().int() });
export const FileParts = z.object({
  id: FileId,
  status: FileStatus,
  part_bytes: z.number().int(),
  parts: z.number().int().describe("How many parts the upload has."),
  stored: z.array(StoredPart).describe("The parts the edge has stored, by number: send the others."),
});
export type FileParts = z.infer<typeof FileParts>;

export const FileComplete = z.strictObject({
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional()
    .describe("Hex SHA-256 of the whole file: when given, the stored bytes must hash to it."),
});

/**
 * A file a job's input names, as the job records it at submit and its lease carries it: what
 * the agent downloads and checks the bytes against.
 */
export const InputFileRef = z
  .strictObject({
    id: FileId,
    content_type: z.string().describe("The file's media type."),
    size: z.number().int().min(0).describe("The file's size (bytes)."),
    sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .describe("Hex SHA-256 of the file's bytes."),
  })
  .describe("An input file named by one field of the job's input.");
export type InputFileRef = z.infer<typeof InputFileRef>;

/** The input files of a job, by the input field naming each. */
export const InputFiles = z.record(z.string(), InputFileRef);
export type InputFiles = z.infer<typeof InputFiles>;

/** Where an input file's bytes live in R2: `inputs/<account>/<file id>`. */
export function inputKey(accountId: string, fileId: string): string {
  return `inputs/${accountId}/${fileId}`;
}

/** The extension a runner's local copy of an input gets, by its media type. */
export function extensionOf(contentType: string): string {
  const ext: Record<string, string> = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
  };
  return ext[contentType] ?? "";
}
