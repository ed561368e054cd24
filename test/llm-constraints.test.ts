/**
 * Constrained-decoding fields as each server kind receives them over HTTP (the fake server records the
 * parsed body), plus the regex→GBNF translation used for llama.cpp.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeOpenAI, type FakeOpenAI } from "./helpers/fake-openai-server.ts";
import {
  choiceToGbnf,
  choiceToRegex,
  constraintFields,
  createChatModel,
  isStrictCompatible,
  regexToGbnf,
  schemaName,
  serverKinds,
  type OutputConstraint,
  type ServerKind,
} from "../src/llm/index.ts";

let s: FakeOpenAI;
beforeAll(async () => {
  s = await startFakeOpenAI();
});
afterAll(() => s.close());

const schema = {
  type: "object",
  properties: { score: { type: "integer" }, reason: { type: "string" } },
  required: ["score", "reason"],
  additionalProperties: false,
};
const regex: OutputConstraint = { kind: "regex", pattern: "Score: [0-5]" };
const json: OutputConstraint = { kind: "json", name: "rubric score", schema };
const choice: OutputConstraint = { kind: "choice", options: ["A", "B", "tie (a.k.a. draw)"] };

/** Sends one request with `constraint` to the fake server as `server` and returns the body it received. */
async function sent(server: ServerKind, constraint: OutputConstraint, constrained = true): Promise<Record<string, unknown>> {
  const m = createChatModel({ baseURL: s.url, model: "m", server, constrained });
  await m.chat({ messages: [{ role: "user", content: "judge" }], constraint });
  return s.requests[s.requests.length - 1];
}

const BASE_KEYS = ["model", "messages"];
const extraKeys = (body: Record<string, unknown>) => Object.keys(body).filter((k) => !BASE_KEYS.includes(k)).sort();

describe("constraint fields on the wire", () => {
  it("vLLM: structured_outputs only, never guided_* or extra_body", async () => {
    for (const c of [regex, json, choice]) {
      const body = await sent("vllm", c);
      expect(extraKeys(body)).toEqual(["structured_outputs"]);
      expect(Object.keys(body).some((k) => k.startsWith("guided_") || k === "extra_body")).toBe(false);
    }
    expect((await sent("vllm", regex)).structured_outputs).toEqual({ regex: "Score: [0-5]" });
    expect((await sent("vllm", json)).structured_outputs).toEqual({ json: schema });
    expect((await sent("vllm", choice)).structured_outputs).toEqual({ choice: ["A", "B", "tie (a.k.a. draw)"] });
  });

  it("SGLang: top-level regex (choice as escaped alternation), response_format for json", async () => {
    expect(await sent("sglang", regex)).toMatchObject({ regex: "Score: [0-5]" });
    const ch = await sent("sglang", choice);
    expect(extraKeys(ch)).toEqual(["regex"]);
    expect(ch.regex).toBe("(?:A|B|tie \\(a\\.k\\.a\\. draw\\))");
    const j = await sent("sglang", json);
    expect(extraKeys(j)).toEqual(["response_format"]);
    expect(j.response_format).toEqual({ type: "json_schema", json_schema: { name: "rubric_score", schema } });
  });

  it("llama.cpp: json_schema object for json, GBNF grammar for regex and choice", async () => {
    const j = await sent("llamacpp", json);
    expect(extraKeys(j)).toEqual(["json_schema"]);
    expect(j.json_schema).toEqual(schema);
    expect(await sent("llamacpp", regex)).toMatchObject({ grammar: 'root ::= ("Score: " [0-5])' });
    expect((await sent("llamacpp", choice)).grammar).toBe('root ::= "A" | "B" | "tie (a.k.a. draw)"');
    // a pattern outside the translatable subset sends nothing rather than a wrong grammar
    const odd = await sent("llamacpp", { kind: "regex", pattern: "(?=x)\\d+" });
    expect(extraKeys(odd)).toEqual([]);
  });

  it("Ollama: response_format json_schema for json, nothing for regex/choice", async () => {
    expect((await sent("ollama", json)).response_format).toEqual({ type: "json_schema", json_schema: { name: "rubric_score", schema } });
    expect(extraKeys(await sent("ollama", regex))).toEqual([]);
    expect(extraKeys(await sent("ollama", choice))).toEqual([]);
  });

  it("OpenAI: strict json_schema with a valid name; strict false when the schema is not strict-compatible", async () => {
    expect((await sent("openai", json)).response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "rubric_score", schema, strict: true },
    });
    const loose = { type: "object", properties: { score: { type: "integer" } } };
    const body = await sent("openai", { kind: "json", name: "x".repeat(100), schema: loose });
    expect(body.response_format).toEqual({ type: "json_schema", json_schema: { name: "x".repeat(64), schema: loose, strict: false } });
    expect(extraKeys(await sent("openai", regex))).toEqual([]);
  });

  it("generic servers and constrained: false send no constraint fields", async () => {
    for (const c of [regex, json, choice]) {
      expect(extraKeys(await sent("generic", c))).toEqual([]);
      expect(extraKeys(await sent("vllm", c, false))).toEqual([]);
    }
  });

  it("every server kind is handled", () => {
    for (const k of serverKinds) expect(() => constraintFields(k, json)).not.toThrow();
    expect(constraintFields("vllm", undefined)).toEqual({});
  });
});

describe("helpers", () => {
  it("escapes choice options into a regex that matches exactly them", () => {
    const re = new RegExp(`^${choiceToRegex(["1+1", "a|b", "[x]", "$5.00"])}$`);
    for (const o of ["1+1", "a|b", "[x]", "$5.00"]) expect(re.test(o)).toBe(true);
    for (const o of ["11", "a", "x", "$5X00"]) expect(re.test(o)).toBe(false);
  });

  it("sanitizes schema names to OpenAI's rules", () => {
    expect(schemaName("rubric score/v2")).toBe("rubric_score_v2");
    expect(schemaName("")).toBe("output");
    expect(schemaName("é".repeat(80))).toHaveLength(64);
  });

  it("checks OpenAI strict-mode compatibility recursively", () => {
    expect(isStrictCompatible(schema)).toBe(true);
    expect(isStrictCompatible({ ...schema, required: ["score"] })).toBe(false);
    expect(
      isStrictCompatible({
        type: "object",
        properties: { items: { type: "array", items: { type: "object", properties: { a: { type: "string" } } } } },
        required: ["items"],
        additionalProperties: false,
      }),
    ).toBe(false);
  });

  it("translates the simple regexes we use into GBNF", () => {
    expect(regexToGbnf("\\d+")).toBe("root ::= [0-9]+");
    expect(regexToGbnf("^[0-5]$")).toBe("root ::= [0-5]");
    expect(regexToGbnf("(yes|no)")).toBe('root ::= ("yes" | "no")');
    expect(regexToGbnf("(?:A|B|tie)")).toBe('root ::= ("A" | "B" | "tie")');
    expect(regexToGbnf("[1-9]\\d{0,2}")).toBe("root ::= ([1-9] ([0-9]? [0-9]?))");
    expect(regexToGbnf("Score: \\d+\\.\\d")).toBe('root ::= ("Score: " [0-9]+ "." [0-9])');
    expect(regexToGbnf('say "hi"\\\\')).toBe('root ::= "say \\"hi\\"\\\\"');
    expect(regexToGbnf("[^\\]^-]+")).toBe("root ::= [^\\]\\x5E\\x2D]+");
    expect(regexToGbnf("a{2,}")).toBe('root ::= ("a" "a"+)');
  });

  it("refuses patterns outside the subset", () => {
    for (const p of ["(?=a)b", "(a)\\1", "\\bword\\b", "a*?", "[a", "(a", "*a", "a{3,1}"]) expect(regexToGbnf(p)).toBeUndefined();
  });

  it("quotes choice literals for GBNF", () => {
    expect(choiceToGbnf(['say "x"', "a\\b"])).toBe('root ::= "say \\"x\\"" | "a\\\\b"');
  });
});
