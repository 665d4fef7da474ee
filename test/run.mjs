#!/usr/bin/env node
// Runs the test suite with node:test through tsx. `--unit` runs only the tests that need no
// root, namespaces or servers. Test files are listed explicitly (Node 20 has no --test globs).
import { readdirSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const unitOnly = process.argv.includes("--unit");
const only = process.argv.slice(2).filter((a) => !a.startsWith("--"));
let files = readdirSync(here).filter((f) => f.endsWith(".test.ts")).sort();
if (unitOnly) files = files.filter((f) => !f.startsWith("e2e-") && !f.startsWith("kernel-") && !f.startsWith("int-"));
if (only.length) files = files.filter((f) => only.some((o) => f.includes(o)));
// Unit tests first, then integration (int-), kernel (kernel-) and end-to-end (e2e-) suites.
const rank = (f) => (f.startsWith("e2e-") ? 3 : f.startsWith("kernel-") ? 2 : f.startsWith("int-") ? 1 : 0);
files.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
const r = spawnSync(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=1", ...files.map((f) => join(here, f))], { stdio: "inherit" });
process.exit(r.status ?? 1);
