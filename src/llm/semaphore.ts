/**
 * Per-endpoint concurrency limit. One inference server has a fixed batch capacity; every ChatModel in the
 * process that talks to the same baseURL shares one gate, so the junior judge, the senior judge and eval
 * together never flood it. Waiting is abortable and FIFO.
 */

export class Semaphore {
  private active = 0;
  private readonly waiters: { grant: () => void }[] = [];
  /** Highest number of holders seen at once (diagnostics). */
  peak = 0;

  constructor(private limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`semaphore limit must be an integer ≥ 1, got ${limit}`);
  }

  get capacity(): number {
    return this.limit;
  }

  get inFlight(): number {
    return this.active;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Lowers (never raises) the limit: the most conservative configuration for a server wins. */
  restrictTo(limit: number): void {
    if (limit < this.limit) this.limit = limit;
  }

  /** Resolves with a release function once a slot is free; rejects with the signal's reason if aborted while waiting. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error("aborted"));
    if (this.active < this.limit) return Promise.resolve(this.take());
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.take());
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason ?? new Error("aborted"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private take(): () => void {
    this.active++;
    if (this.active > this.peak) this.peak = this.active;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      while (this.active < this.limit && this.waiters.length > 0) this.waiters.shift()!.grant();
    };
  }
}

const gates = new Map<string, Semaphore>();

/** The process-wide gate for one server (keyed by normalized baseURL). */
export function endpointSemaphore(baseURL: string, maxConcurrency: number): Semaphore {
  const key = baseURL.replace(/\/+$/, "");
  let s = gates.get(key);
  if (!s) gates.set(key, (s = new Semaphore(maxConcurrency)));
  else s.restrictTo(maxConcurrency);
  return s;
}
