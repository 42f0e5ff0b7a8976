/**
 * The life of a job's files in R2 after its attempts: when an attempt ends, its unfinished
 * multipart uploads are aborted (each started upload leaves a marker under `uploads/`, since the
 * R2 binding cannot list multipart uploads) and, unless the attempt succeeded, its outputs are
 * deleted; when a job is deleted (by its owner or past retention), everything under its
 * prefixes goes, finished or not. Called by the scheduler actor, off the request's path
 * (`waitUntil`). R2's own lifecycle rule (incomplete multipart uploads are aborted after seven
 * days) is the backstop for a cleanup that fails.
 */
import { outputsPrefix, uploadsPrefix, type UploadMarker } from "../shared/outputs.ts";

/** Keys of every object under `prefix`, page by page. */
async function* listed(
  bucket: R2Bucket,
  prefix: string,
): AsyncGenerator<{ keys: string[]; markers: Partial<UploadMarker>[] }> {
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, cursor, include: ["customMetadata"] });
    yield {
      keys: page.objects.map((o) => o.key),
      markers: page.objects.map((o) => (o.customMetadata ?? {}) as Partial<UploadMarker>),
    };
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
}

/** Deletes every object under `prefix`. */
async function deleteAll(bucket: R2Bucket, prefix: string): Promise<void> {
  for await (const page of listed(bucket, prefix)) {
    if (page.keys.length > 0) await bucket.delete(page.keys);
  }
}

/** Aborts the unfinished uploads whose markers are under `prefix`, and deletes the markers. */
async function abortUploads(bucket: R2Bucket, prefix: string): Promise<void> {
  for await (const page of listed(bucket, prefix)) {
    await Promise.all(
      page.markers.map(async (m) => {
        if (!m.upload_id || !m.key || m.done === "1") return;
        try {
          await bucket.resumeMultipartUpload(m.key, m.upload_id).abort();
        } catch (err) {
          // Already gone (aborted, or never created); R2's lifecycle rule catches anything else.
          console.warn(JSON.stringify({ level: "warn", what: "abort upload", key: m.key, error: String(err) }));
        }
      }),
    );
    if (page.keys.length > 0) await bucket.delete(page.keys);
  }
}

/**
 * An attempt ended: its unfinished uploads are aborted and, unless it succeeded (its outputs
 * are the job's), its files are deleted.
 */
export async function endAttemptFiles(bucket: R2Bucket, jobId: string, epoch: number, kept: boolean): Promise<void> {
  await abortUploads(bucket, uploadsPrefix(jobId, epoch));
  if (!kept) await deleteAll(bucket, outputsPrefix(jobId, epoch));
}

/** A job was deleted: every object under it goes, and every upload it left open is aborted. */
export async function purgeJobFiles(bucket: R2Bucket, jobId: string): Promise<void> {
  await abortUploads(bucket, uploadsPrefix(jobId));
  await deleteAll(bucket, outputsPrefix(jobId));
}
