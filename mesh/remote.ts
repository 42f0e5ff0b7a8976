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
