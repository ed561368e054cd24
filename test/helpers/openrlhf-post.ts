/**
 * Test copy of OpenRLHF's reward request loop, ported line by line from Python to TypeScript:
 * OpenRLHF/OpenRLHF openrlhf/utils/agent.py @3c3be6234e0cb353e76bb8019947db9dfe99fca7,
 * SingleTurnAgentExecutor._fetch_rewards_via_http → inner `_post_request(url, data, try_max_times=5)`:
 *
 *     timeout = aiohttp.ClientTimeout(total=180)
 *     for _ in range(try_max_times):
 *         try:
 *             async with aiohttp.ClientSession(timeout=timeout) as session:
 *                 async with session.post(url, json=data) as response:
 *                     response.raise_for_status()
 *                     return await response.json()
 *         except aiohttp.ClientError as e: logger.info(...)
 *         except Exception as e: logger.info(...)
 *         await asyncio.sleep(1)
 *     raise RuntimeError(f"Request error for {try_max_times} times, returning None. Please check the API server.")
 *
 * (python3 here has no aiohttp, so the loop is ported rather than run.) Only the two time constants are
 * parameters, so tests can scale time down; `scale` = 1 is OpenRLHF exactly (180 s total per try, 1 s sleep).
 * The caller (execute) then reads rewards_info["rewards"]; a RuntimeError leaves reward None and the run
 * fails later with "reward_model_group is required…".
 */
export interface OpenRlhfPostOptions {
  /** Multiplies OpenRLHF's 180 s per-try timeout and 1 s sleep. */
  scale?: number;
  tryMaxTimes?: number;
  /** logger.info */
  log?: (line: string) => void;
}

export async function openrlhfPostRequest(url: string, data: unknown, opts: OpenRlhfPostOptions = {}): Promise<any> {
  const scale = opts.scale ?? 1;
  const tryMaxTimes = opts.tryMaxTimes ?? 5;
  const log = opts.log ?? (() => {});
  for (let i = 0; i < tryMaxTimes; i++) {
    try {
      // aiohttp.ClientTimeout(total=180): covers connecting, sending, and reading the whole reply.
      const res = await fetch(url, {
        method: "POST",
        // session.post(url, json=data): aiohttp sets Content-Type: application/json.
        headers: { "content-type": "application/json" },
        body: JSON.stringify(data),
        signal: AbortSignal.timeout(180_000 * scale),
      });
      // response.raise_for_status(): any status >= 400 raises ClientResponseError (a ClientError).
      if (res.status >= 400) {
        await res.body?.cancel();
        throw new Error(`${res.status}, message='${res.statusText}', url='${url}'`);
      }
      return await res.json();
    } catch (e) {
      log(`Request error, please check: ${(e as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, 1000 * scale)); // asyncio.sleep(1)
  }
  throw new Error(`Request error for ${tryMaxTimes} times, returning None. Please check the API server.`);
}
