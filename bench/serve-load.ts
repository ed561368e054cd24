/**
 * Bounded loopback load test of `mpo serve` (bench/serve-server.ts runs in its own process so client and
 * server each get a core), all at --meta-every 0 (the fixed-rubric baseline, one window for the whole run):
 *  1. zero-latency judge: samples/s and per-request latency p50/p99 for OpenRLHF-style single-sample calls
 *     (/get_reward) and native batches (/v1/score); targets ≥ 2,000 samples/s and ≤ 2 ms added p50;
 *  2. the service's RSS after 1k, 5k, 10k and 29k scored samples: flat, because the window lives on disk;
 *  3. a judge with 1–5 s latency per call and 2% failing calls at 64 concurrent single-sample requests:
 *     p50/p99, 503s, rewards that differ from the judge's score. Time is scaled by SCALE (default 0.1: calls
 *     take 0.1–0.5 s, the outage backoff is scaled alike); latencies are reported as measured and ÷ SCALE.
 * Run: npm run bench:serve
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { Agent, request } from "node:http";

const SCALE = Number(process.env.SCALE ?? "0.1");

async function startChild(env: Record<string, string>): Promise<{ child: ChildProcess; base: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/serve-server.ts"], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
  const [line] = (await once(child.stdout!, "data")) as [Buffer];
  return { child, base: line.toString().trim() };
}

/** Resident set size of a process in MB (Linux /proc). */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

let { child, base } = await startChild({});
let { hostname, port } = new URL(base);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

function post(path: string, body: string, onBody?: (status: number, text: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = request({ host: hostname, port, path, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        onBody?.(res.statusCode ?? 0, text);
        if (res.statusCode === 200 || onBody) resolve(Number(process.hrtime.bigint() - t0) / 1e6);
        else reject(new Error(`HTTP ${res.statusCode}`));
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function run(label: string, path: string, body: string, samplesPerRequest: number, requests: number, concurrency: number, onBody?: (status: number, text: string) => void) {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) {
        next++;
        lat.push(await post(path, body, onBody));
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  const sps = (requests * samplesPerRequest) / secs;
  console.log(
    `${label.padEnd(44)} ${String(requests * samplesPerRequest).padStart(7)} samples  ${sps.toFixed(0).padStart(6)} samples/s  p50 ${q(0.5).toFixed(2)} ms  p99 ${q(0.99).toFixed(2)} ms  (per request; ${samplesPerRequest}/request, ${concurrency} in flight)`,
  );
  return { sps, p50: q(0.5), p99: q(0.99) };
}

const chatml = "<|im_start|>user\nWrite a short essay about libraries.<|im_end|>\n<|im_start|>assistant\nLibraries give every reader free access to books.<|im_end|>";
const one = JSON.stringify({ query: [chatml], prompts: [], labels: [null] });
const batch64 = JSON.stringify({ items: Array.from({ length: 64 }, () => ({ prompt: "Write a short essay about libraries.", response: "Libraries give every reader free access to books." })) });

console.log(`mpo serve load test (zero-latency judge, per-item mode, 1-item rubric: 2 judge calls per sample, --meta-every 0) at ${base}`);
await run("warm-up", "/get_reward", one, 1, 500, 16);
const rss: Array<[number, number]> = [[500, rssMb(child.pid!)]];
const lone = await run("/get_reward, 1 sample/request, 1 in flight", "/get_reward", one, 1, 500, 1);
rss.push([1000, rssMb(child.pid!)]);
const single = await run("/get_reward, 1 sample/request, 32 in flight", "/get_reward", one, 1, 4000, 32);
rss.push([5000, rssMb(child.pid!)]);
await run("/get_reward, 1 sample/request, 32 in flight", "/get_reward", one, 1, 5000, 32);
rss.push([10000, rssMb(child.pid!)]);
const batched = await run("/v1/score, 64 samples/request, 4 in flight", "/v1/score", batch64, 64, 300, 4);
rss.push([10000 + 300 * 64, rssMb(child.pid!)]);
console.log(
  `\nadded latency p50 (1 in flight): ${lone.p50.toFixed(2)} ms (target ≤ 2 ms) — throughput: ${single.sps.toFixed(0)} samples/s single-sample, ${batched.sps.toFixed(0)} samples/s batched (target ≥ 2000)`,
);
console.log(`service RSS at --meta-every 0 (one open window, on disk): ${rss.map(([n, mb]) => `${n} samples ${mb.toFixed(0)} MB`).join(", ")} — growth 1k→10k: ${(rss[3][1] - rss[1][1]).toFixed(0)} MB`);
child.kill("SIGTERM");
await once(child, "exit");

// 3. A slow, faulty judge at 64 concurrent single-sample requests.
({ child, base } = await startChild({ JUDGE: "slow", SCALE: String(SCALE), FAULT: "0.02" }));
({ hostname, port } = new URL(base));
let status503 = 0;
let wrong = 0;
const requests = 640;
const slow = await run(`/get_reward, judge 1–5 s ×${SCALE} + 2% faults, 64 in flight`, "/get_reward", one, 1, requests, 64, (status, text) => {
  if (status === 503) status503++;
  else if (status !== 200 || JSON.parse(text).rewards[0] !== 0.8) wrong++;
});
console.log(
  `slow judge: p50 ${slow.p50.toFixed(0)} ms, p99 ${slow.p99.toFixed(0)} ms measured = p50 ${(slow.p50 / SCALE / 1000).toFixed(1)} s, p99 ${(slow.p99 / SCALE / 1000).toFixed(1)} s at full scale (2 calls of 1–5 s per sample; a fault costs a backoff of ≤ 1 s × 2^n and a new ask); ${status503} × 503, ${wrong} rewards ≠ the judge's score, of ${requests} requests`,
);
child.kill("SIGTERM");
agent.destroy();
