#!/usr/bin/env node
// Launcher: registers tsx's loader in-process so `npx mpo …` runs the TypeScript CLI without a build step.
import { register } from "tsx/esm/api";
register();
const { main } = await import("../src/cli/main.ts");
await main(process.argv);
