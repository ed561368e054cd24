/**
 * Optional on-disk reply cache: re-running an experiment (or resuming after a crash) does not pay for the
 * same judge call twice. One JSON file per request key under <cacheDir>/<2 hex>/<key>.json, written
 * atomically. Only deterministic requests are cached (temperature 0 or an explicit seed): caching a
 * sampled reply would silently turn repeated samples into copies. A corrupt or foreign file is treated
 * as a miss and overwritten on the next store.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeJsonAtomic } from "../util/atomic.ts";
import type { ChatMessage, OutputConstraint } from "./types.ts";

const CACHE_FORMAT = 1;

export interface CacheKeyParts {
  baseURL: string;
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string[];
  seed?: number;
  constraint?: OutputConstraint;
}

export interface CachedReply {
  text: string;
  promptTokens: number;
  completionTokens: number;
  finishReason?: string;
  usageEstimated?: boolean;
  reasoning?: string;
}

/** JSON with object keys sorted, so logically equal requests hash equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]));
    }
    return v;
  });
}

export function cacheKey(p: CacheKeyParts): string {
  const material = {
    v: CACHE_FORMAT,
    baseURL: p.baseURL.replace(/\/+$/, ""),
    model: p.model,
    messages: p.messages.map((m) => ({ role: m.role, content: m.content })),
    temperature: p.temperature ?? null,
    topP: p.topP ?? null,
    maxTokens: p.maxTokens ?? null,
    stop: p.stop ?? null,
    seed: p.seed ?? null,
    constraint: p.constraint ?? null,
  };
  return createHash("sha256").update(canonicalJson(material)).digest("hex");
}

/** Deterministic enough to reuse: greedy decoding, or a fixed seed. */
export function isCacheable(p: Pick<CacheKeyParts, "temperature" | "seed">): boolean {
  return p.temperature === 0 || p.seed !== undefined;
}

function isCachedReply(x: unknown): x is CachedReply {
  if (!x || typeof x !== "object") return false;
  const r = x as Record<string, unknown>;
  return (
    typeof r.text === "string" &&
    typeof r.promptTokens === "number" &&
    Number.isFinite(r.promptTokens) &&
    typeof r.completionTokens === "number" &&
    Number.isFinite(r.completionTokens)
  );
}

export class ReplyCache {
  constructor(readonly dir: string) {}

  pathFor(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  /** The stored reply, or undefined on a miss or an unreadable/corrupt entry. */
  get(key: string): CachedReply | undefined {
    const path = this.pathFor(key);
    if (!existsSync(path)) return undefined;
    try {
      const rec = JSON.parse(readFileSync(path, "utf8")) as { format?: number; key?: string; reply?: unknown };
      if (rec.format !== CACHE_FORMAT || rec.key !== key || !isCachedReply(rec.reply)) return undefined;
      return rec.reply;
    } catch {
      return undefined;
    }
  }

  put(key: string, reply: CachedReply): void {
    writeJsonAtomic(this.pathFor(key), { format: CACHE_FORMAT, key, savedAt: new Date().toISOString(), reply });
  }
}
