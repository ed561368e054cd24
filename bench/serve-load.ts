/**
 * Bounded loopback load test of `mpo serve` against a zero-latency judge (bench/serve-server.ts runs in
 * its own process so client and server each get a core). Reports samples/s and per-request latency
 * p50/p99 for OpenRLHF-style single-sample calls (/get_reward) and for native batches (/v1/score).
 * Targets (issue): ≥ 2,000 samples/s and ≤ 2 ms added p50.   Run: npm run bench:serve
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { Agent, request } from "node:http";

const child = spawn(process.execPath, ["--import", "tsx", "bench/serve-server.ts"], { stdio: ["ignore", "pipe", "inherit"] });
const [line] = (await once(child.stdout!, "data")) as [Buffer];
const base = line.toString().trim();
const { hostname, port } = new URL(base);
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

function post(path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = request({ host: hostname, port, path, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - t0) / 1e6) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function run(label: string, path: string, body: string, samplesPerRequest: number, requests: number, concurrency: number) {
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) {
        next++;
        lat.push(await post(path, body));
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

console.log(`mpo serve load test (zero-latency judge, per-item mode, 1-item rubric: 2 judge calls per sample) at ${base}`);
await run("warm-up", "/get_reward", one, 1, 500, 16);
const lone = await run("/get_reward, 1 sample/request, 1 in flight", "/get_reward", one, 1, 2000, 1);
const single = await run("/get_reward, 1 sample/request, 32 in flight", "/get_reward", one, 1, 10000, 32);
const batched = await run("/v1/score, 64 samples/request, 4 in flight", "/v1/score", batch64, 64, 300, 4);
console.log(
  `\nadded latency p50 (1 in flight): ${lone.p50.toFixed(2)} ms (target ≤ 2 ms) — throughput: ${single.sps.toFixed(0)} samples/s single-sample, ${batched.sps.toFixed(0)} samples/s batched (target ≥ 2000)`,
);
child.kill("SIGTERM");
agent.destroy();
