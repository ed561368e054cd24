#!/usr/bin/env node
// Launcher for the `mpo` command. In a checkout (src/ present, dev dependencies installed) it runs the
// TypeScript CLI through tsx, so `npx mpo …` needs no build step and always runs the current sources. The
// published package ships compiled JavaScript (dist/, built by `npm pack` through the prepack script) and
// no src/, so an installed `mpo` runs plain Node with no tsx.
import { existsSync } from "node:fs";

const src = new URL("../src/cli/main.ts", import.meta.url);
let main;
if (existsSync(src)) {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import(src.href));
} else {
  ({ main } = await import(new URL("../dist/cli/main.js", import.meta.url).href));
}
await main(process.argv);
