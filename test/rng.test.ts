import { describe, expect, it } from "vitest";
import { Rng } from "../src/util/rng.ts";

describe("Rng", () => {
  it("is reproducible from a seed and resumable from its state", () => {
    const a = new Rng(42);
    const first = Array.from({ length: 5 }, () => a.nextUint32());
    const saved = a.state();
    const cont = Array.from({ length: 5 }, () => a.nextUint32());
    expect(Array.from({ length: 5 }, () => new Rng(42)).map((r) => r.nextUint32())[0]).toBe(first[0]);
    const b = Rng.fromState(saved);
    expect(Array.from({ length: 5 }, () => b.nextUint32())).toEqual(cont);
  });
  it("gives different streams for different seeds and roughly uniform floats", () => {
    expect(new Rng(1).nextUint32()).not.toBe(new Rng(2).nextUint32());
    const r = new Rng(7);
    let sum = 0;
    for (let i = 0; i < 20000; i++) sum += r.random();
    expect(sum / 20000).toBeGreaterThan(0.48);
    expect(sum / 20000).toBeLessThan(0.52);
  });
  it("samples without replacement", () => {
    const s = new Rng(3).sample([1, 2, 3, 4, 5, 6], 4);
    expect(new Set(s).size).toBe(4);
  });
});
