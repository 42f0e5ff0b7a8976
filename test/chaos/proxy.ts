/**
 * A TCP proxy in front of the edge, one listening port per agent, so the fault injector can cut
 * one agent's connections (its WebSocket and its uploads) or refuse them for a while — a network
 * fault, seen by both ends as a reset. It keeps listening while the edge restarts: connections
 * made then are refused because the edge is not there.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export interface AgentLink {
  /** The URL the agent is given (`http://127.0.0.1:<port>`). */
  readonly url: string;
  /** Resets every open connection of this agent. Answers how many were cut. */
  cut(): number;
  /** Resets every open connection and refuses new ones until `ms` have passed. */
  partition(ms: number): number;
  close(): Promise<void>;
}

/** Opens a link to `target` (host:port of the edge) on a free port of 127.0.0.1. */
export async function openLink(targetPort: number): Promise<AgentLink> {
  const open = new Set<Socket>();
  let refuseUntil = 0;
  const server: Server = createServer((client) => {
    if (Date.now() < refuseUntil) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: "127.0.0.1", port: targetPort });
    open.add(client);
    open.add(upstream);
    const drop = (): void => {
      open.delete(client);
      open.delete(upstream);
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    };
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(0, "127.0.0.1", () => res());
  });
  const addr = server.address();
  if (typeof addr !== "object" || addr === null) throw new Error("the proxy has no port");
  const cut = (): number => {
    const n = open.size / 2;
    for (const s of open) s.resetAndDestroy();
    open.clear();
    return n;
  };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    cut,
    partition: (ms) => {
      refuseUntil = Date.now() + ms;
      return cut();
    },
    close: async () => {
      cut();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}
