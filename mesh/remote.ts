/**
 * Typed RPC stubs for our actors.
 */
/**
 * An actor's methods as the caller sees them over RPC: the same arguments, the result
 * awaited. Our actors take and return plain data (structured-clone safe), which the generated
 * stub types cannot express for open records such as a job's input.
 */
export type Remote<T> = {
  [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K] extends (...args: infer A) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never;
};

/** A typed stub for the actor named `name` in a namespace. */
export function actor<T>(ns: DurableObjectNamespace, name: string): Remote<T> {
  return ns.get(ns.idFromName(name)) as unknown as Remote<T>;
}

/**
 * Calls `fn` on every item, at most `limit` at a time: a fan-out to many actors that does not
 * open a call to each at once. Answers when every call has settled; a failed call is the
 * caller's to catch.
 */
export async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
