/**
 * The check a succeeded `job.results` entry must pass before its attempt may succeed: every output record is
 * one the edge itself stored and hashed for this very lease (its receipt, shared/signing.ts),
 * names are unique, and the outputs are what the model's policy asks for (required names,
 * minimum count, content types, size caps; shared/outputs.ts). Called by the agent actor on
 * every success; a success that fails it ends its attempt as `invalid_output`.
 */
import { mediaType, outputKey, type OutputPolicy } from "../shared/outputs.ts";
import { verifyOutputReceipt } from "../shared/signing.ts";
import type { LeaseRef, OutputRecord } from "../shared/wire.ts";

/** An output as the job records it (the receipt has done its work). */
export type StoredOutput = Omit<OutputRecord, "receipt">;

export type OutputCheck = { ok: true; outputs: StoredOutput[] } | { ok: false; message: string };

const refuse = (message: string): OutputCheck => ({ ok: false, message });

/**
 * Checks the outputs a success names for the lease `ref` against the edge's receipts
 * (signed with `secret`) and the model's `policy`.
 *
 * @example
 * const checked = await checkOutputs(msg.outputs, { job_id, epoch }, outputPolicy(model.outputs), secret);
 * if (!checked.ok) refuse(checked.message);
 */
export async function checkOutputs(
  records: readonly OutputRecord[],
  ref: LeaseRef,
  policy: OutputPolicy,
  secret: string,
): Promise<OutputCheck> {
  const names = new Set<string>();
  let total = 0;
  for (const r of records) {
    const key = outputKey(ref.job_id, ref.epoch, r.name);
    // The key is this lease's own: another job's or another attempt's object is never recorded.
    if (r.key !== key) return refuse(`output ${r.name}: its key is not ${key}, this attempt's own`);
    if (names.has(r.name)) return refuse(`output ${r.name} is named twice`);
    names.add(r.name);
    if (!secret || !(await verifyOutputReceipt(secret, r, r.receipt))) {
      return refuse(
        `output ${r.name}: no valid receipt; name each output by the record its upload's complete answered`,
      );
    }
    const type = mediaType(r.content_type);
    if (!policy.content_types.includes(type)) {
      return refuse(`output ${r.name}: content type ${type} is not one the model allows`);
    }
    if (r.size > policy.max_bytes) {
      return refuse(`output ${r.name}: ${r.size} bytes, over the model's max_bytes of ${policy.max_bytes}`);
    }
    total += r.size;
  }
  if (total > policy.max_job_bytes) {
    return refuse(`the outputs total ${total} bytes, over the model's max_job_bytes of ${policy.max_job_bytes}`);
  }
  const missing = policy.required.filter((n) => !names.has(n));
  if (missing.length > 0) return refuse(`required outputs missing: ${missing.join(", ")}`);
  if (records.length < policy.min) {
    return refuse(`${records.length} outputs; the model requires at least ${policy.min}`);
  }
  return { ok: true, outputs: records.map(({ receipt: _receipt, ...stored }) => stored) };
}
