/**
 * The integration examples (examples/openrlhf, examples/verl, examples/trl) against the real reward
 * service, started in-process with a scripted judge: the Python files compile, the service config example
 * validates, the exact JSON bodies the examples send are accepted, and — when python3 with `requests` is
 * installed — the example reward functions themselves are run against the service.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readConfigFile, validate } from "../src/config/load.ts";
import { createChatModel } from "../src/llm/openai-client.ts";
import { ScriptedChatModel } from "../src/llm/scripted.ts";
import type { ChatModel, ChatRequest } from "../src/llm/types.ts";
import { serveConfigSchema } from "../src/serve/config.ts";
import { ServiceMetrics } from "../src/serve/metrics.ts";
import { startServer, type ServerHandle } from "../src/serve/server.ts";
import { RewardService } from "../src/serve/service.ts";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";

const REPO = resolve(__dirname, "..");
const EX = join(REPO, "examples");
const run = promisify(execFile);

function pythonWith(mod?: string): boolean {
  try {
    execFileSync("python3", ["-c", mod ? `import ${mod}` : "pass"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const HAS_PYTHON = pythonWith();
const HAS_REQUESTS = HAS_PYTHON && pythonWith("requests");

/** A junior judge that gives 4 to responses containing "good" and 1 otherwise (0–5 rubric → 0.8 / 0.2). */
const scripted = () =>
  new ScriptedChatModel((req: ChatRequest) => {
    const last = req.messages[req.messages.length - 1].content;
    if (/integer score/i.test(last)) return /good/.test(req.messages[1].content) ? "4" : "1";
    return "One sentence of rationale.";
  });

async function startService(
  judge: ChatModel,
  outage?: { deadlineMs: number; backoffBaseMs: number; backoffMaxMs: number },
  unreadable?: { onUnreadable: "retry" | "sentinel"; reasks: number; minSamples: number },
): Promise<ServerHandle> {
  const runDir = mkdtempSync(join(tmpdir(), "mpo-examples-"));
  const rubric = join(runDir, "rubric.txt");
  writeFileSync(rubric, "<rubric><item>Quality: how good the response is. Score from 0 to 5.</item></rubric>");
  const cfg = serveConfigSchema.parse({ runDir: join(runDir, "run"), rubric, port: 0, judge: { baseURL: "http://127.0.0.1:9/v1", model: "m" }, metaEvery: 0, rewardScale: "normalized" }); // as examples/openrlhf/mpo-serve.yaml sets it
  const service = new RewardService({
    runDir: cfg.runDir,
    rubricFile: cfg.rubric!,
    taskDescription: cfg.taskDescription,
    judge,
    mode: cfg.mode,
    metaEvery: cfg.metaEvery,
    metaSamples: cfg.metaSamples,
    prescreen: cfg.prescreen,
    seed: 0,
    concurrency: 8,
    outage,
    unreadable,
  });
  return startServer(cfg, service, new ServiceMetrics());
}

async function post(h: ServerHandle, path: string, body: unknown) {
  const r = await fetch(h.url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as any };
}

const chatmlPrompt = (p: string) => `<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n${p}<|im_end|>\n<|im_start|>assistant\n`;

/**
 * The request bodies, exactly as the examples build them:
 *  - OpenRLHF: openrlhf/utils/agent.py `_fetch_rewards_via_http` posts {query, prompts, labels}, one sample per
 *    request (examples/openrlhf/README.md "What goes over the wire"); other shards get empty lists.
 *  - veRL: examples/verl/mpo_reward.py `_item` + `_post_score` → {items: [{prompt, response, reference?, metadata}]}.
 *  - TRL: examples/trl/grpo_mpo.py `mpo_reward` + `score_items` → {items: [{prompt, response}, …]} per batch.
 */
const BODIES = {
  openrlhf: {
    query: [chatmlPrompt("Write an essay about rivers.") + "A good essay about rivers.<|im_end|>"],
    prompts: [chatmlPrompt("Write an essay about rivers.")],
    labels: [null],
  },
  openrlhfEmptyShard: { query: [], prompts: [], labels: [] },
  verl: { items: [{ prompt: "Write an essay about rivers.", response: "A good essay.", reference: "Rivers shape land.", metadata: { data_source: "mpo/essay" } }] },
  trl: { items: [{ prompt: "Write a haiku.", response: "good rain" }, { prompt: "Write a haiku.", response: "meh" }] },
};

let h: ServerHandle;
beforeAll(async () => {
  h = await startService(scripted());
});
afterAll(async () => {
  await h?.close();
});

describe("examples: files", () => {
  const pyFiles = readdirSync(EX, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".py"));

  it("there are Python examples for veRL and TRL, and each has a README", () => {
    expect(pyFiles.sort()).toEqual(["trl/grpo_mpo.py", "verl/mpo_reward.py"]);
    for (const d of ["openrlhf", "verl", "trl"]) expect(readdirSync(join(EX, d))).toContain("README.md");
  });

  it.skipIf(!HAS_PYTHON)("every Python example compiles (python3 -m py_compile)", () => {
    for (const f of pyFiles) {
      const out = mkdtempSync(join(tmpdir(), "mpo-pyc-"));
      // -c with py_compile.compile(doraise=True) so a syntax error fails the test with Python's message.
      execFileSync("python3", ["-c", `import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)`, join(EX, f), join(out, "x.pyc")]);
    }
  });

  it("the OpenRLHF service config validates against the service schema", () => {
    const cfg = validate(serveConfigSchema, readConfigFile(join(EX, "openrlhf", "mpo-serve.yaml")), "mpo-serve.yaml");
    expect(cfg).toMatchObject({ port: 5000, metaEvery: 640, metaSamples: 20, mode: "per-item", split: "chatml" });
    expect(cfg.token).toBeUndefined(); // OpenRLHF sends no Authorization header
    expect(cfg.judge).toMatchObject({ server: "vllm", model: "Qwen/Qwen2.5-72B-Instruct-AWQ" });
    expect(cfg.limits.requestTimeoutMs).toBeLessThan(180_000); // inside OpenRLHF's per-request timeout
  });

  it("the OpenRLHF launch script points --reward.remote_url at the /get_reward path", async () => {
    const { readFileSync } = await import("node:fs");
    const sh = readFileSync(join(EX, "openrlhf", "train_ppo_mpo.sh"), "utf8");
    expect(sh).toMatch(/MPO_URL=\$\{MPO_URL:-http:\/\/[^}]+\/get_reward\}/);
    expect(sh).toMatch(/--reward\.remote_url "\$MPO_URL"/);
    expect(sh).not.toMatch(/--remote_rm_url/);
  });
});

describe("examples: the documented request bodies are what the service accepts", () => {
  it("OpenRLHF single-sample request and empty shard", async () => {
    const r = await post(h, "/get_reward", BODIES.openrlhf);
    expect(r).toEqual({ status: 200, body: { rewards: [0.8], scores: [0.8], extra_logs: { rubric_version: [0], judge_flagged: [0], judge_unreadable: [0] } } });
    expect(await post(h, "/get_reward", BODIES.openrlhfEmptyShard)).toEqual({ status: 200, body: { rewards: [], scores: [], extra_logs: { rubric_version: [], judge_flagged: [], judge_unreadable: [] } } });
  });

  it("veRL and TRL /v1/score bodies", async () => {
    const v = await post(h, "/v1/score", BODIES.verl);
    expect(v.status).toBe(200);
    expect(v.body.results.map((x: any) => [x.normalized, x.score, x.rubricVersion])).toEqual([[0.8, 4, 0]]);
    const t = await post(h, "/v1/score", BODIES.trl);
    expect(t.body.results.map((x: any) => x.normalized)).toEqual([0.8, 0.2]);
    expect(t.body.rubricVersion).toBe(0);
  });
});

describe.skipIf(!HAS_REQUESTS)("examples: the Python reward functions against the running service", () => {
  const py = (dir: string, code: string, env: Record<string, string> = {}) =>
    run("python3", ["-c", code], { cwd: join(EX, dir), env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", MPO_URL: h.url, MPO_RETRIES: "2", ...env } });

  it("veRL compute_score and compute_score_batch return {'score': …} per response", async () => {
    const { stdout } = await py(
      "verl",
      [
        "import json, mpo_reward as m",
        "one = m.compute_score('mpo/essay', 'a good essay', '', {'question': 'Write an essay.'})",
        "many = m.compute_score_batch(['mpo/essay'] * 2, ['good text', 'weak text'], [None, 'ref'], [{'question': 'Q1'}, {'question': 'Q2'}])",
        "print(json.dumps([one, many]))",
      ].join("\n"),
    );
    const [one, many] = JSON.parse(stdout);
    expect(one).toEqual({ score: 0.8, rubric_version: 0, raw_score: 4, mpo_unreadable: 0 });
    expect(many.map((x: any) => x.score)).toEqual([0.8, 0.2]);
  });

  it("veRL: a missing extra_info['question'] is a clear error, not a score", async () => {
    const err = await py("verl", "import mpo_reward as m\nm.compute_score('s', 'text', None, {})").catch((e) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toMatch(/extra_info\['question'\] is missing/);
  });

  it("TRL mpo_reward: standard and conversational formats", async () => {
    const { stdout } = await py(
      "trl",
      [
        "import json, grpo_mpo as g",
        "std = g.mpo_reward(prompts=['Write.', 'Write.'], completions=['good', 'bad'], completion_ids=[[1], [2]])",
        "logged = []",
        "conv = g.mpo_reward(",
        "  prompts=[[{'role': 'system', 'content': 'sys'}, {'role': 'user', 'content': 'Write a poem.'}]] * 2,",
        "  completions=[[{'role': 'assistant', 'content': 'a good poem'}], [{'role': 'assistant', 'content': 'meh'}]],",
        "  log_metric=lambda name, value: logged.append([name, value]))",
        "print(json.dumps([std, conv, logged]))",
      ].join("\n"),
    );
    expect(JSON.parse(stdout)).toEqual([[0.8, 0.2], [0.8, 0.2], [["mpo/rubric_version", 0]]]);
  });

  /** What the judge was shown for the rollouts logged so far (the open window of `h`). */
  const logged = () =>
    readFileSync(join(h.service.store.dir, "..", "rollouts", "step-000000.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));

  it("TRL: content blocks with images (unserializable objects), tool-call-only completions and the system turn reach the judge as text", async () => {
    const { stdout } = await py(
      "trl",
      [
        "import json, grpo_mpo as g",
        "class Image: pass  # stands in for PIL.Image.Image: not JSON serializable",
        "prompt = [{'role': 'system', 'content': [{'type': 'text', 'text': 'You are a poet.'}]},",
        "          {'role': 'user', 'content': [{'type': 'image', 'image': Image()}, {'type': 'text', 'text': 'Describe this picture.'}]}]",
        "tool = [{'role': 'assistant', 'content': None, 'tool_calls': [{'type': 'function', 'function': {'name': 'search', 'arguments': {'q': 'good rain'}}}]}]",
        "text = [{'role': 'assistant', 'content': [{'type': 'text', 'text': 'a good picture of rain'}]}]",
        "print(json.dumps(g.mpo_reward(prompts=[prompt, prompt], completions=[tool, text])))",
      ].join("\n"),
    );
    expect(JSON.parse(stdout)).toEqual([0.8, 0.8]);
    const [tool, text] = logged().slice(-2);
    expect(tool.prompt).toBe("[system]\nYou are a poet.\n\n[user]\n[image]\nDescribe this picture.");
    expect(tool.response).toBe('[tool call] search({"q": "good rain"})');
    expect(text.response).toBe("a good picture of rain");
  });

  it("any JSON label reaches the judge as the reference (OpenRLHF labels, veRL ground_truth)", async () => {
    const body = { query: [0, 1, 2].map(() => BODIES.openrlhf.query[0]), prompts: [0, 1, 2].map(() => BODIES.openrlhf.prompts[0]), labels: [42, ["x = 2", "x = -2"], { gold: "permissible" }] };
    const r = await post(h, "/get_reward", body);
    expect(r.status).toBe(200);
    expect(r.body.rewards).toEqual([0.8, 0.8, 0.8]);
    expect(logged().slice(-3).map((x) => [x.reference, x.label])).toEqual([
      ["42", 42],
      ['["x = 2","x = -2"]', ["x = 2", "x = -2"]],
      ['{"gold":"permissible"}', { gold: "permissible" }],
    ]);
    const { stdout } = await py("verl", "import json, mpo_reward as m\nprint(json.dumps(m.compute_score('s', 'good', 7, {'question': 'Q'})))");
    expect(JSON.parse(stdout).score).toBe(0.8);
    expect(logged().at(-1).reference).toBe("7");
  });

  describe("unreadable judge replies under the sentinel policy", () => {
    let unread: ServerHandle;
    beforeAll(async () => {
      const judge = new ScriptedChatModel((req: ChatRequest) => (/integer score/i.test(req.messages.at(-1)!.content) ? (/good/.test(req.messages[1].content) ? "4" : "I'd rather not say.") : "Rationale."));
      unread = await startService(judge, undefined, { onUnreadable: "sentinel", reasks: 0, minSamples: 1000 });
    });
    afterAll(async () => {
      await unread?.close();
    });

    it("TRL returns None (unscorable row) and veRL raises unless MPO_UNREADABLE_SCORE is set, then flags it", async () => {
      const trl = await py("trl", "import json, grpo_mpo as g\nprint(json.dumps(g.mpo_reward(prompts=['Q', 'Q'], completions=['good', 'other'])))", { MPO_URL: unread.url });
      expect(JSON.parse(trl.stdout)).toEqual([0.8, null]);
      const code = "import json, mpo_reward as m\nprint(json.dumps(m.compute_score('s', 'other', None, {'question': 'Q'})))";
      const err = await py("verl", code, { MPO_URL: unread.url }).catch((e) => e);
      expect(err.code).toBe(1);
      expect(err.stderr).toMatch(/stayed unreadable.*MPO_UNREADABLE_SCORE/);
      const ok = await py("verl", code, { MPO_URL: unread.url, MPO_UNREADABLE_SCORE: "0" });
      expect(JSON.parse(ok.stdout)).toEqual({ score: 0, rubric_version: 0, raw_score: 0, mpo_unreadable: 1 });
    });
  });

  describe("judge outage", () => {
    let fake: FakeOpenAI;
    let down: ServerHandle;
    let failuresLeft = 0;
    beforeAll(async () => {
      fake = await startFakeOpenAI({
        reply: ({ messages }) => {
          if (failuresLeft > 0) {
            failuresLeft--;
            return { status: 500, body: { error: { message: "judge overloaded" } } };
          }
          const last = messages[messages.length - 1].content;
          return /integer score/i.test(last) ? "3" : "Fine.";
        },
      });
      // Deadline scaled down from 170 s so the persistent outage below answers 503 quickly.
      down = await startService(createChatModel({ baseURL: fake.url, model: "fake-model", maxTries: 1 }), { deadlineMs: 1500, backoffBaseMs: 10, backoffMaxMs: 50 });
    });
    afterAll(async () => {
      await down?.close();
      await fake?.close();
    });

    it("a short outage is waited out inside the request; when it outlasts the deadline the clients retry the 503, then raise", async () => {
      failuresLeft = 1; // the first judge call fails → the service retries it within the request
      const outages = async () => (await down.metrics.errors.get()).values.find((v) => v.labels.kind === "judge_unavailable")?.value ?? 0;
      const before = fake.requests.length;
      const ok = await py("verl", "import json, mpo_reward as m\nprint(json.dumps(m.compute_score('s', 'x', None, {'question': 'Q'})))", { MPO_URL: down.url });
      expect(JSON.parse(ok.stdout)).toEqual({ score: 0.6, rubric_version: 0, raw_score: 3, mpo_unreadable: 0 });
      expect(fake.requests.length - before).toBe(3); // the failed call, then rationale + score
      expect(await outages()).toBe(0); // no 503 reached the client
      failuresLeft = 1_000;
      const err = await py("trl", "import grpo_mpo as g\ng.mpo_reward(prompts=['Q'], completions=['x'])", { MPO_URL: down.url }).catch((e) => e);
      expect(err.code).toBe(1);
      expect(err.stderr).toMatch(/could not score after 2 tries \(last: HTTP 503: .*deadline/);
      failuresLeft = 0;
    }, 30_000);
  });
});
