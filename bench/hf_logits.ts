/**
 * The engine's full log-softmax for given tokens, printed as JSON [B][T][V] — the engine side of
 * bench/hf_check.py (which compares it with transformers). Usage: npx tsx bench/hf_logits.ts DIR '[[1,2,3]]'
 */
import { loadCheckpoint } from "../src/engine/io/checkpoint.ts";
import { resolveModelSource } from "../src/engine/io/hub.ts";
import { TransformerLM } from "../src/engine/index.ts";

const [spec, tokensJson] = process.argv.slice(2);
if (!spec || !tokensJson) {
  process.stderr.write("usage: tsx bench/hf_logits.ts MODEL_DIR_OR_ID '[[token ids], …]'\n");
  process.exit(2);
}
const ck = loadCheckpoint(await resolveModelSource(spec));
const model = TransformerLM.fromParams(ck.config, ck.tensors);
const rows = JSON.parse(tokensJson) as number[][];
const B = rows.length;
const T = rows[0].length;
const V = model.dims.V;
const tokens = Int32Array.from(rows.flat());
const out: number[][][] = rows.map(() => Array.from({ length: T }, () => new Array<number>(V)));
for (let j = 0; j < V; j++) {
  const lp = model.score(tokens, new Int32Array(B * T).fill(j), B, T).logprobs;
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) out[b][t][j] = lp[b * T + t];
}
process.stdout.write(JSON.stringify(out) + "\n");
