/**
 * Byte rate limits for the agent's weight transfers (`--max-upload-mibps`,
 * `--max-download-mibps`): a token bucket (the `limiter` package's, which queues waiters in
 * order and wakes each when its tokens have dripped in) charged per chunk as bytes pass. One
 * bucket per direction per agent, shared by every transfer in that direction, so the limit holds
 * for the agent as a whole whatever the number of peers.
 */
import { TokenBucket } from "limiter";

const MiB = 1024 * 1024;
/** Burst: what may pass at once after an idle spell (bytes); small beside a second of traffic. */
const BURST_BYTES = 256 * 1024;

export class ByteBucket {
  readonly bytesPerSecond: number;
  private readonly bucket: TokenBucket;

  /** A bucket passing `mibps` MiB/s. */
  constructor(mibps: number) {
    if (!(mibps > 0)) throw new RangeError("a rate limit is a positive number of MiB/s");
    this.bytesPerSecond = mibps * MiB;
    this.bucket = new TokenBucket({
      bucketSize: Math.max(BURST_BYTES, Math.ceil(this.bytesPerSecond / 50)),
      tokensPerInterval: this.bytesPerSecond,
      interval: "second",
    });
  }

  /** Resolves once `bytes` may pass (taken in slices no larger than the bucket). */
  async take(bytes: number): Promise<void> {
    let left = bytes;
    while (left > 0) {
      const slice = Math.min(left, this.bucket.bucketSize);
      await this.bucket.removeTokens(slice);
      left -= slice;
    }
  }
}

/**
 * Passes `chunks` through `bucket` (unchanged without one), each chunk released once the bucket
 * lets its bytes through.
 *
 * @example
 * await pipeline(Readable.from(throttled(upload, createReadStream(path))), res);
 */
export async function* throttled(
  bucket: ByteBucket | undefined,
  chunks: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    if (bucket) await bucket.take(chunk.length);
    yield chunk;
  }
}

/**
 * Passes `chunks` on as they arrive and charges `bucket` for them, finishing only once the
 * bucket has let every byte through: a download paced this way is usable at the bucket's rate.
 * The reader is never parked between reads of a fetch body (a body errored while nobody reads
 * it escapes as an uncaught error in Node's fetch); the sender's upload bucket and TCP pace the
 * wire itself.
 *
 * @example
 * for await (const chunk of paced(download, res.body)) hash.update(chunk);
 */
export async function* paced(
  bucket: ByteBucket | undefined,
  chunks: AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  let charged: Promise<void> = Promise.resolve();
  for await (const chunk of chunks) {
    if (bucket) {
      const n = chunk.length;
      charged = charged.then(() => bucket.take(n));
    }
    yield chunk;
  }
  await charged;
}
