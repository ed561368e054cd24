import { describe, expect, it } from "vitest";
import { porterStem, rougeCorpus, rougeLsumTokens, rougeScore, rougeTokenize } from "../src/eval/rouge.ts";

// Lines 1–2 of rouge-score's testdata/target.txt and prediction.txt (google-research/google-research,
// rouge/testdata): random strings with English suffixes, used by rouge_scorer_test.py against ROUGE-1.5.5.
const TARGETS = [
  "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L",
  "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN",
];
const PREDICTIONS = [
  "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi",
  "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD",
];

function close(actual: number, expected: number, places = 5) {
  expect(Math.abs(actual - expected)).toBeLessThan(0.5 * 10 ** -places);
}

describe("ROUGE (rouge-score compatible)", () => {
  it("tokenizes like rouge-score", () => {
    expect(rougeTokenize("The quick-brown FOX, jumps!! 42x")).toEqual(["the", "quick", "brown", "fox", "jumps", "42x"]);
    expect(rougeTokenize("Running dogs ran", true)).toEqual(["run", "dog", "ran"]);
  });

  it("matches rouge_scorer_test.py small cases", () => {
    let r = rougeScore("testing one two", "testing", ["rouge1"]);
    close(r.rouge1.precision, 1);
    close(r.rouge1.recall, 1 / 3);
    close(r.rouge1.fmeasure, 1 / 2);
    r = rougeScore("testing one two", "testing one", ["rouge2", "rougeL"]);
    close(r.rouge2.fmeasure, 2 / 3);
    close(r.rougeL.recall, 2 / 3);
    close(r.rougeL.fmeasure, 4 / 5);
    r = rougeScore("testing one two", "testing two", ["rougeL"]);
    close(r.rougeL.fmeasure, 4 / 5);
    for (const t of ["rouge1", "rouge2", "rougeL", "rougeLsum"] as const) expect(rougeScore("testing one two", "", [t])[t].fmeasure).toBe(0);
  });

  it("matches ROUGE-1.5.5 values documented in rouge_scorer_test.py (with and without stemming)", () => {
    const r0 = rougeScore(TARGETS[0], PREDICTIONS[0], ["rouge1", "rouge2", "rougeL"]);
    close(r0.rouge1.recall, 0.40741);
    close(r0.rouge1.precision, 0.6875);
    close(r0.rouge1.fmeasure, 0.51163);
    close(r0.rouge2.recall, 0.30769);
    close(r0.rouge2.precision, 0.53333);
    close(r0.rouge2.fmeasure, 0.39024);
    close(r0.rougeL.fmeasure, 0.51163);
    const r1 = rougeScore(TARGETS[1], PREDICTIONS[1], ["rouge1", "rouge2", "rougeL"]);
    close(r1.rouge1.recall, 0.40476);
    close(r1.rouge1.precision, 0.65385);
    close(r1.rouge1.fmeasure, 0.5);
    close(r1.rouge2.fmeasure, 0.36364);
    close(r1.rougeL.fmeasure, 0.5);
    const s1 = rougeScore(TARGETS[1], PREDICTIONS[1], ["rouge1", "rouge2"], { useStemmer: true });
    close(s1.rouge1.recall, 0.42857);
    close(s1.rouge1.precision, 0.69231);
    close(s1.rouge1.fmeasure, 0.52941);
    close(s1.rouge2.fmeasure, 0.36364);
    const s0 = rougeScore(TARGETS[0], PREDICTIONS[0], ["rouge1"], { useStemmer: true });
    close(s0.rouge1.fmeasure, 0.51163);
  });

  it("summary-level LCS matches the ROUGE paper example used by rouge-score", () => {
    const s = rougeLsumTokens([["1", "2", "3", "4", "5"]], [["1", "2", "6", "7", "8"], ["1", "3", "8", "9", "5"]]);
    expect(s.recall).toBeCloseTo(0.8, 10);
    expect(s.precision).toBeCloseTo(0.4, 10);
    expect(s.fmeasure).toBeCloseTo(0.5333, 3);
    const r = rougeScore("w1 w2 w3 w4 w5", "w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5", ["rougeLsum"]);
    expect(r.rougeLsum.recall).toBeCloseTo(0.8, 10);
    expect(r.rougeLsum.precision).toBeCloseTo(0.4, 10);
    expect(rougeScore("w1 w2 w3 w4 w5", "/", ["rougeLsum"]).rougeLsum.fmeasure).toBe(0);
    expect(rougeScore("", "w1", ["rougeLsum"]).rougeLsum.fmeasure).toBe(0);
  });

  it("hand-checked example: repeated words are clipped", () => {
    // target: the cat sat on the mat (6 tokens); prediction: the the the cat (4 tokens)
    // rouge1 overlap: the→min(2,3)=2, cat→1 ⇒ 3; P=3/4, R=3/6, F=0.6
    // rouge2: target bigrams {the cat, cat sat, sat on, on the, the mat}; prediction {the the ×2, the cat} ⇒ overlap 1; P=1/3, R=1/5, F=0.25
    // rougeL: LCS("the cat sat on the mat", "the the the cat") = "the cat" = 2 ⇒ P=2/4, R=2/6, F=0.4
    const r = rougeScore("The cat sat on the mat.", "the the the cat", ["rouge1", "rouge2", "rougeL"]);
    close(r.rouge1.fmeasure, 0.6);
    close(r.rouge2.fmeasure, 0.25);
    close(r.rougeL.fmeasure, 0.4);
  });

  it("nltk-mode stemming special cases and corpus mean", () => {
    expect(porterStem("skies")).toBe("sky");
    expect(porterStem("dying")).toBe("die");
    expect(porterStem("dies")).toBe("die");
    expect(porterStem("generously")).toBe("gener");
    expect(porterStem("caresses")).toBe("caress");
    const c = rougeCorpus([
      { target: "a b c", prediction: "a b c" },
      { target: "a b c", prediction: "x y z" },
    ], ["rouge1"]);
    expect(c.n).toBe(2);
    expect(c.mean.rouge1.fmeasure).toBeCloseTo(0.5, 12);
  });
});
