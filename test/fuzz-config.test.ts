// Hostile configuration input, bounded and seeded: pathological files (huge lines, many lines,
// deep nesting, alias bombs, NUL and BOM, lone surrogates) for every format — ldirectord.cf,
// keepalived.conf and the native YAML — each answered with a result or a ConfigError within a
// time bound, never a crash or a hang; and seeded mutations of configurations that carry
// secrets (probe passwords, RADIUS secrets, VRRP auth_pass) whose diagnostics and
// `config check --json` output never contain the secret. Pure: no servers, no root.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { loadConfigSources, type ConfigFormat } from "../shared/config/load.ts";
import { ConfigError, formatDiagnostic, type Diagnostic } from "../shared/config/diagnostics.ts";
import { configCommand } from "../services/cli/config.ts";
import { rng } from "./fuzz-events.ts";

const SEED_CF = readFileSync(fileURLToPath(new URL("../infra/lab/seed-ldirectord.cf", import.meta.url)), "utf8");
const KEEPALIVED = readFileSync(fileURLToPath(new URL("fixtures/keepalived/lb1-keepalived.conf", import.meta.url)), "utf8");
const YAML = readFileSync(fileURLToPath(new URL("../infra/lab/lvsflow.yaml", import.meta.url)), "utf8") +
  "virtualServices:\n  - { address: 198.51.100.50, port: 80, reals: [{ address: 203.0.113.11, forwarding: masq }] }\n";
const BASE: Record<ConfigFormat, { path: string; text: string }> = {
  ldirectord: { path: "fuzz.cf", text: SEED_CF },
  keepalived: { path: "fuzz-keepalived.conf", text: KEEPALIVED },
  yaml: { path: "fuzz.yaml", text: YAML },
};
/** Generous: two shared cores and other test runs. A parser that hangs or goes quadratic on these exceeds it by far. */
const PER_INPUT_MS = 10_000;

/** Loads one text: returns its diagnostics; anything thrown but a ConfigError fails the test with the input. */
function load(format: ConfigFormat, path: string, text: string, what: string): { ds: Diagnostic[]; ms: number } {
  const t0 = performance.now();
  let ds: Diagnostic[];
  try {
    ds = loadConfigSources([{ path, text }], { format, readFile: () => { throw Object.assign(new Error("no includes in fuzz"), { code: "ENOENT" }); } }).warnings;
  } catch (e) {
    if (!(e instanceof ConfigError)) assert.fail(`${format} ${what} threw ${(e as Error).stack}\n--- input (first 500 chars) ---\n${text.slice(0, 500)}`);
    ds = e.diagnostics;
    assert.ok(ds.some((d) => d.severity === "error"), `${format} ${what}: a ConfigError carries an error`);
  }
  const ms = performance.now() - t0;
  assert.ok(ms < PER_INPUT_MS, `${format} ${what} took ${Math.round(ms)} ms`);
  for (const d of ds) assert.ok(Number.isInteger(d.line) && d.line >= 1 && Number.isInteger(d.col) && d.col >= 1, `${format} ${what}: ${formatDiagnostic(d)}`);
  return { ds, ms };
}

/** Pathological inputs, per format (the text generators are shared where the syntax allows). */
function pathological(format: ConfigFormat): [string, string][] {
  const big = "a".repeat(1_000_000);
  const common: [string, string][] = [
    ["empty", ""],
    ["only a BOM", "\ufeff"],
    ["NUL bytes", "\u0000".repeat(10_000)],
    ["lone surrogates", "\ud800\udfff\ud800".repeat(10_000)],
    ["one 1 MB line", big],
    ["200k empty lines", "\n".repeat(200_000)],
    ["CR only line ends", BASE[format].text.replace(/\n/g, "\r")],
    ["binary", Array.from({ length: 50_000 }, (_, i) => String.fromCharCode((i * 7919) % 256)).join("")],
  ];
  if (format === "ldirectord") return [...common,
    ["20k virtual services", Array.from({ length: 20_000 }, (_, i) => `virtual=198.51.100.${i % 250}:${1 + i}\n\treal=203.0.113.11:80 masq\n`).join("")],
    ["20k reals in one virtual", "virtual=198.51.100.50:80\n" + Array.from({ length: 20_000 }, (_, i) => `\treal=203.0.113.${i % 250}:${1 + i} masq ${i}\n`).join("")],
    ["a 1 MB quoted value", `virtual=198.51.100.50:80\n\treal=203.0.113.11:80 masq\n\trequest="${"\\\"".repeat(500_000)}"\n`],
    ["receive as a 100 kB regex", `virtual=198.51.100.50:80\n\treal=203.0.113.11:80 masq\n\treceive="${"(a+)+".repeat(20_000)}"\n`],
    ["the seed ×200", SEED_CF.repeat(200)],
  ];
  if (format === "keepalived") return [...common,
    ["10k nested blocks", "virtual_server 198.51.100.50 80 {\n" + "{\n".repeat(10_000) + "}\n".repeat(10_000) + "}\n"],
    ["10k unclosed blocks", "global_defs {\n".repeat(10_000)],
    ["10k stray closing braces", "}\n".repeat(10_000)],
    ["5k virtual servers", Array.from({ length: 5_000 }, (_, i) => `virtual_server 198.51.100.50 ${1 + i} {\n lvs_sched rr\n lvs_method NAT\n protocol TCP\n real_server 203.0.113.11 80 { weight 1\n TCP_CHECK { connect_timeout 3 } }\n}\n`).join("")],
    ["include loop", "include /etc/keepalived/keepalived.conf\n".repeat(1000)],
    ["the fixture ×100", KEEPALIVED.repeat(100)],
  ];
  return [...common,
    ["deep flow nesting", "virtualServices: " + "[".repeat(5_000) + "]".repeat(5_000) + "\n"],
    ["deep block nesting", Array.from({ length: 2_000 }, (_, i) => `${" ".repeat(i)}a${i}:\n`).join("")],
    ["alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`).join("\n") + "\nsite: x\nvirtualServices: []\n"],
    ["recursive alias", "site: &s [*s]\nvirtualServices: []\n"],
    ["100k keys", Array.from({ length: 100_000 }, (_, i) => `k${i}: ${i}`).join("\n") + "\n"],
    ["a 1 MB scalar", `site: "${big}"\nvirtualServices: []\n`],
    ["10k virtual services", "virtualServices:\n" + Array.from({ length: 10_000 }, (_, i) => `  - { address: 198.51.100.50, port: ${1 + i}, reals: [{ address: 203.0.113.11, forwarding: masq }] }\n`).join("")],
    ["tags everywhere", "site: !!js/function 'return 1'\nnodes: !!set { a, b }\nvirtualServices: !!binary aGVsbG8=\n"],
    ["merge keys and proto", "base: &b { __proto__: { polluted: true }, constructor: { prototype: { polluted: true } } }\nsite: x\nnodes: [{ <<: *b, name: a, priority: 1 }]\nvirtualServices: []\n"],
  ];
}

for (const format of ["ldirectord", "keepalived", "yaml"] as const) {
  test(`${format}: pathological inputs end in a model or a ConfigError, each within ${PER_INPUT_MS / 1000} s`, { timeout: 240_000 }, () => {
    const times: string[] = [];
    for (const [what, text] of pathological(format)) {
      const { ds, ms } = load(format, BASE[format].path, text, what);
      times.push(`${what} ${Math.round(ms)} ms/${ds.length} diag`);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, "no prototype pollution");
    process.stdout.write(`# ${format}: ${times.join("; ")}\n`);
  });
}

// ---- secrets in hostile configurations ------------------------------------------------------

const SECRETS = ["Pr0be-Passw0rd-91f3", "Radius-Shared-S3cret-7c2e", "Vrrp-Auth-Pass-44aa", "Yaml-Check-Passwd-0d9b", "Probe-Login-Name-5e61"];
const SECRET_BASE: Record<ConfigFormat, { path: string; text: string }> = {
  ldirectord: { path: "s.cf", text: `checktimeout=3
virtual=198.51.100.50:21
	real=203.0.113.11:21 masq
	service=ftp
	checktype=negotiate
	login="${SECRETS[4]}"
	passwd="${SECRETS[0]}"
	request="welcome.msg"
	receive="Welcome"
virtual=198.51.100.50:1812
	real=203.0.113.11:1812 gate
	protocol=udp
	service=radius
	checktype=negotiate
	login="${SECRETS[4]}"
	passwd="${SECRETS[0]}"
	secret="${SECRETS[1]}"
` },
  keepalived: { path: "s-keepalived.conf", text: KEEPALIVED.replace("auth_pass s3cret", `auth_pass ${SECRETS[2]}`) },
  yaml: { path: "s.yaml", text: `site: s
virtualServices:
  - address: 198.51.100.50
    port: 2121
    check: { type: negotiate, service: ftp, login: "${SECRETS[4]}", passwd: "${SECRETS[3]}", request: welcome.msg, receive: Welcome }
    reals: [{ address: 203.0.113.11, forwarding: masq }]
` },
};

function mutateText(text: string, r: (n: number) => number): string {
  const alphabet = ' \t#="\',:{}[]&*!|>-0123456789abz.\r\n\u0000\\';
  let t = text;
  for (let m = 1 + r(4); m > 0; m--) {
    const p = r(t.length + 1);
    switch (r(5)) {
      case 0: t = t.slice(0, p) + alphabet[r(alphabet.length)]!.repeat(1 + r(3)) + t.slice(p); break;
      case 1: t = t.slice(0, p) + t.slice(p + 1 + r(6)); break;
      case 2: { const lines = t.split("\n"); const k = r(lines.length); lines.splice(r(lines.length), 0, lines[k]!); t = lines.join("\n"); break; }
      case 3: { const lines = t.split("\n"); const k = r(lines.length); lines[k] = lines[k]!.trimStart(); t = lines.join("\n"); break; }
      default: { const lines = t.split("\n"); const k = r(lines.length); lines[k] = lines[k]!.replace(/"/g, ""); t = lines.join("\n"); }
    }
  }
  return t;
}

test("secrets: 600 seeded mutations per format of configurations with probe passwords, RADIUS secrets and auth_pass; no diagnostic repeats a secret", { timeout: 240_000 }, () => {
  const r = rng(0x5ec7e7);
  let diags = 0;
  for (const format of ["ldirectord", "keepalived", "yaml"] as const) {
    const { path, text } = SECRET_BASE[format];
    for (let i = 0; i < 600; i++) {
      const t = mutateText(text, r);
      const { ds } = load(format, path, t, `mutation ${i}`);
      diags += ds.length;
      for (const d of ds) {
        const line = formatDiagnostic(d);
        for (const s of SECRETS) assert.ok(!line.includes(s), `${format} mutation ${i} leaks a secret: ${line}\n--- input ---\n${t}`);
      }
    }
  }
  process.stdout.write(`# secrets fuzz: 1800 mutated configurations, ${diags} diagnostics, none with a secret\n`);
});

test("config check --json and the summary never print a configured secret", async () => {
  const files: Record<string, string> = { "/s.cf": SECRET_BASE.ldirectord.text, "/s.yaml": SECRET_BASE.yaml.text.replace("site: s\n", "site: s\ninclude: /s.cf\n") };
  let out = "", err = "";
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) };
  const { loadConfig } = await import("../shared/config/load.ts");
  const loaded = loadConfig(["/s.yaml"], { readFile: (p) => files[p] ?? (() => { throw Object.assign(new Error("nope"), { code: "ENOENT" }); })() });
  assert.equal(loaded.model.virtualServices.find((v) => v.port === 1812)?.check.secret, SECRETS[1], "the model keeps the secret for the prober");
  // The CLI reads real files: write them to a temporary directory.
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "lvsflow-cfg-"));
  try {
    writeFileSync(join(dir, "s.cf"), files["/s.cf"]!);
    writeFileSync(join(dir, "s.yaml"), SECRET_BASE.yaml.text.replace("site: s\n", `site: s\ninclude: ${join(dir, "s.cf")}\n`));
    assert.equal(await configCommand(["check", "--json", join(dir, "s.yaml")], io), 0, err);
    const model = JSON.parse(out) as { virtualServices: { check: Record<string, unknown> }[] };
    assert.ok(model.virtualServices.some((v) => v.check.passwd === "[redacted]" && v.check.login === "[redacted]"));
    assert.ok(model.virtualServices.some((v) => v.check.secret === "[redacted]"));
    assert.equal(await configCommand(["check", join(dir, "s.yaml")], io), 0);
    for (const s of SECRETS) assert.ok(!out.includes(s) && !err.includes(s), `printed ${s}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
