/**
 * PoolsActor: one, named `global`. A thin shell over mesh/pools/: it keeps the pools applied
 * (`floodgate pools apply`), and its alarm, every {@link TICK_MS} while any pool exists, reads
 * the fleet (mesh/capacity.ts), decides each pool's desired count (decide.ts) and, when it
 * moves, records a call: a webhook pool's call the actor sends itself, signed as Standard
 * Webhooks; a command pool's call waits for a provisioner (`floodgate provisioner`), which takes
 * it by long poll (`claim`), runs the command and answers. Every call and answer is kept.
 * While a pool grows towards agents its models do not have yet, their shards hear that it is
 * scaling up, so a waiting job's status says `scaling_up`.
 *
 * Who calls it: the edge's pool and provisioner routes (edge/routes/pools.ts).
 */
import { DurableObject } from "cloudflare:workers";
import { fail, type Failure } from "../shared/errors.ts";
import { schedulerName } from "../shared/ids.ts";
import type { PoolsFile, PoolsStatus, ProvisionerAnswer, ProvisionerCall } from "../shared/pools.ts";
import { newWebhookSecret, signWebhook } from "../shared/webhook-signature.ts";
import { demand } from "../shared/capacity.ts";
import { readFleet, type FleetAgent } from "./capacity.ts";
import { decide, initialState, targets, type PoolChange } from "./pools/decide.ts";
import { MIGRATIONS, PoolsStore, type PoolRow } from "./pools/store.ts";
import type { RegistryActor } from "./registry-actor.ts";
import { actor } from "./remote.ts";
import type { SchedulerActor } from "./scheduler-actor.ts";
import { durableSql } from "./sql/durable.ts";
import { migrate, migrated } from "./sql/sql.ts";

/** How often pools are decided (ms). */
export const TICK_MS = 2_000;
/** A call a provisioner took and has not answered this long no longer holds its pool back (ms). */
const CALL_TIMEOUT_MS = 120_000;
/** How long a shard says `scaling_up` after the last tick that said so (ms): a few ticks. */
const SCALING_HOLD_MS = 4 * TICK_MS;
/** A webhook's answer is waited for this long (ms). */
const WEBHOOK_TIMEOUT_MS = 10_000;
/** Calls shown per pool by `status`. */
const CALLS_SHOWN = 20;

export class PoolsActor extends DurableObject<Env> {
  private store: PoolsStore | undefined;
  /** Provisioners waiting in `claim` for a call. */
  private waiters = new Set<() => void>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    // An alarm can be lost across a restart: re-armed on every wake while pools exist.
    void ctx.blockConcurrencyWhile(async () => {
      const sql = durableSql(ctx.storage.sql);
      if (!migrated(sql)) return;
      this.store = new PoolsStore(sql);
      if (this.store.pools().length > 0 && (await ctx.storage.getAlarm()) === null) {
        await ctx.storage.setAlarm(Date.now() + TICK_MS);
      }
    });
  }

  private writable(): PoolsStore {
    if (!this.store) {
      const sql = durableSql(this.ctx.storage.sql);
      migrate(sql, MIGRATIONS);
      this.store = new PoolsStore(sql);
    }
    return this.store;
  }

  /**
   * Replaces the pools with the file's: a pool kept keeps its state and secret; a new pool
   * starts at the agents it has; a pool no longer named is forgotten with its calls. Answers
   * the new webhook pools' signing secrets (shown once).
   */
  async apply(file: PoolsFile, source?: string): Promise<{ pools: string[]; secrets: Record<string, string> }> {
    const { agents } = await readFleet(this.env);
    const store = this.writable();
    const now = Date.now();
    const held = new Map(store.pools().map((p) => [p.name, p]));
    const secrets: Record<string, string> = {};
    for (const [name, spec] of Object.entries(file.pools)) {
      const old = held.get(name);
      let secret = old?.secret ?? null;
      if (spec.webhook !== undefined && secret === null) {
        secret = newWebhookSecret();
        secrets[name] = secret;
      }
      const state = old
        ? { ...old.state, desired: Math.min(spec.max, Math.max(spec.min, old.state.desired)) }
        : initialState(spec, agents.filter((a) => a.pool === name).length, now);
      store.putPool({ name, spec, secret, state });
      held.delete(name);
    }
    for (const name of held.keys()) store.deletePool(name);
    if (source !== undefined) store.setSource(source);
    await this.ctx.storage.setAlarm(now);
    return { pools: Object.keys(file.pools).sort(), secrets };
  }

  /** Every pool: its spec, desired and connected agents, busy agents and recent calls. */
  async status(): Promise<PoolsStatus> {
    const store = this.store;
    if (!store) return { pools: [] };
    const { agents } = await readFleet(this.env);
    return {
      pools: store.pools().map((p) => {
        const mine = agents.filter((a) => a.pool === p.name);
        return {
          name: p.name,
          spec: p.spec,
          desired: p.state.desired,
          connected: mine.length,
          busy: mine.filter((a) => a.running > 0).length,
          calls: store.recentCalls(p.name, CALLS_SHOWN),
        };
      }),
    };
  }

  /**
   * A provisioner for `pools` asks for work: the command pools' calls not yet taken, marked
   * taken; with none, waits up to `waitMs` for one (a long poll).
   */
  async claim(pools: string[], waitMs: number): Promise<ProvisionerCall[]> {
    const deadline = Date.now() + Math.min(waitMs, 30_000);
    for (;;) {
      const out = this.takeCalls(pools);
      const left = deadline - Date.now();
      if (out.length > 0 || left <= 0) return out;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  private takeCalls(pools: readonly string[]): ProvisionerCall[] {
    const store = this.store;
    if (!store) return [];
    const specs = new Map(store.pools().map((p) => [p.name, p.spec]));
    const commandPools = pools.filter((p) => specs.get(p)?.command !== undefined);
    return store.takeUnsent(commandPools, Date.now()).map((r) => ({
      id: r.id,
      pool: r.pool,
      command: specs.get(r.pool)?.command ?? "",
      desired: r.desired,
      remove: JSON.parse(r.remove) as string[],
    }));
  }

  /** A provisioner's answer to a call of one of its pools. */
  async answer(id: number, pools: string[], a: ProvisionerAnswer): Promise<{ ok: true } | Failure> {
    const call = this.store?.call(id);
    if (!call || !pools.includes(call.pool)) return fail("not_found", `no call ${id} for this provisioner's pools`);
    const code = a.exit_code === null ? "no exit code" : `exit ${a.exit_code}`;
    this.store?.answer(id, a.ok, `${code}\n${a.output}`, Date.now());
    return { ok: true };
  }

  override async alarm(): Promise<void> {
    const store = this.store;
    if (!store || store.pools().length === 0) return;
    try {
      await this.tick(store);
    } finally {
      await this.ctx.storage.setAlarm(Date.now() + TICK_MS);
    }
  }

  /** One round of decisions over every pool. */
  private async tick(store: PoolsStore): Promise<void> {
    const { view, agents, loads } = await readFleet(this.env);
    const now = Date.now();
    const pools = store.pools();
    // Sized for agents that have yet to start: each model's need counts the start-up time of the
    // slowest pool that serves it.
    const needs = Object.fromEntries(
      Object.keys(view.models).map((m) => {
        const startup = Math.max(0, ...pools.filter((p) => p.spec.models.includes(m)).map((p) => p.spec.startup_s));
        const serving = agents.filter((a) => a.models.includes(m));
        return [m, demand(loads.get(m) ?? [], serving, startup).agents_needed];
      }),
    );
    const target = targets(new Map(pools.map((p) => [p.name, p.spec])), needs);
    const scaling = new Set<string>();
    let woke = false;
    for (const pool of pools) {
      const mine = agents.filter((a) => a.pool === pool.name);
      const last = store.lastCall(pool.name);
      if (last && last.sent_at !== null && last.answered_at === null) {
        // One call at a time: the provisioner acts on the newest desired count once it answers.
        if (now - last.sent_at < CALL_TIMEOUT_MS) continue;
        store.answer(last.id, false, `no answer within ${CALL_TIMEOUT_MS / 1000} s`, now);
      }
      const out = decide(pool.spec, pool.state, target.get(pool.name) ?? 0, mine.map(agentOf), now);
      store.setState(pool.name, out.state);
      if (out.change) {
        const id =
          last && last.sent_at === null
            ? (store.updateUnsent(last.id, out.change, now), last.id)
            : store.addCall(pool.name, out.change, now);
        if (pool.spec.webhook !== undefined) this.ctx.waitUntil(this.sendWebhook(store, pool, id, out.change));
        else woke = true;
      }
      if (out.state.desired > mine.length) {
        for (const m of pool.spec.models) if ((view.models[m]?.agents_connected ?? 0) === 0) scaling.add(m);
      }
    }
    // Deleting the entry being visited is safe in a Set's iteration.
    if (woke) for (const wake of this.waiters) wake();
    if (scaling.size > 0) await this.tellScaling(scaling, now + SCALING_HOLD_MS);
  }

  /** Calls a webhook pool's URL with the change, signed; its status and body head are kept. */
  private async sendWebhook(store: PoolsStore, pool: PoolRow, id: number, change: PoolChange): Promise<void> {
    const url = pool.spec.webhook;
    if (url === undefined || pool.secret === null) return;
    const body = JSON.stringify({ type: "pool.scale", pool: pool.name, ...change });
    store.markSent(id, Date.now());
    try {
      const headers = await signWebhook([pool.secret], `poolcall_${id}`, Date.now() / 1000, body);
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body,
        signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
      });
      const text = (await res.text()).slice(0, 1024);
      store.answer(id, res.ok, `HTTP ${res.status}\n${text}`, Date.now());
    } catch (err) {
      store.answer(id, false, `not delivered: ${(err as Error).message}`, Date.now());
    }
  }

  /** The shards of models a pool grows for, with no agent yet: their waiting jobs say `scaling_up`. */
  private async tellScaling(models: Set<string>, until: number): Promise<void> {
    const snapshot = await actor<RegistryActor>(this.env.REGISTRY, "global").snapshot();
    await Promise.all(
      snapshot.models
        .filter((m) => models.has(m.name))
        .flatMap((m) =>
          Array.from({ length: m.shards }, (_, shard) =>
            actor<SchedulerActor>(this.env.SCHEDULER, schedulerName({ modelNumber: m.number, shard }))
              .scaling(until)
              .catch(() => undefined),
          ),
        ),
    );
  }
}

function agentOf(a: FleetAgent): { id: string; running: number } {
  return { id: a.agent_id, running: a.running };
}
