// Host side of the IPVS test VM: makes sure qemu and the image exist, boots Debian's kernel under
// qemu (TCG: this host's KVM cannot run stock kernels), and runs argument vectors in the guest
// through the command agent on virtio-serial. Used by test/kernel-ipvs.test.ts; see README.md.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CmdResult } from "../../services/executor/run.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "..", "..");

export interface VmImage { dir: string; kernel: string }

const has = (cmd: string) => spawnSync("sh", ["-c", 'command -v "$1"', "sh", cmd]).status === 0;

/**
 * qemu, busybox-static and ipvsadm on the host (installed by infra/install-deps.sh when missing),
 * then the kernel + initramfs (infra/ipvs-vm/build.sh, cached). Throws with the tool's output.
 */
export function ensureVmImage(cacheDir?: string): VmImage {
  if (!has("qemu-system-x86_64") || !existsSync("/bin/busybox") || !has("ipvsadm")) {
    const r = spawnSync("bash", [join(REPO, "infra", "install-deps.sh")], { encoding: "utf8", timeout: 600_000 });
    if (r.status !== 0) throw new Error(`infra/install-deps.sh failed (${r.status}): ${(r.stderr || r.stdout).slice(-2000)}`);
  }
  const r = spawnSync("bash", [join(HERE, "build.sh"), ...(cacheDir ? [cacheDir] : [])], { encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) throw new Error(`infra/ipvs-vm/build.sh failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const dir = r.stdout.trim().split("\n").pop()!;
  return { dir, kernel: readFileSync(join(dir, "kernel.txt"), "utf8").trim() };
}

export interface VmOptions {
  image: VmImage;
  memMb?: number;
  /** Run qemu inside this network namespace (its tap devices live there). */
  netns?: string;
  /** Tap devices for the guest's eth0 and eth1 (already created, in `netns`). */
  taps?: string[];
  /** Guest addresses (CIDR) for eth0, eth1. */
  ips?: string[];
  bootTimeoutMs?: number;
}

interface Pending { resolve: (r: CmdResult) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }

/** One running VM. exec() calls are queued: the agent serves one request at a time. */
export class IpvsVm {
  readonly dir: string;
  readonly bootMs: number;
  private proc: ChildProcess;
  private sock: Socket | null = null;
  private buf = Buffer.alloc(0);
  private pending: Pending | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private broken: string | null = null;

  private constructor(proc: ChildProcess, dir: string, bootMs: number) { this.proc = proc; this.dir = dir; this.bootMs = bootMs; }

  get pid(): number | undefined { return this.proc.pid; }

  /** Console output so far (kernel messages, LVF: lines). */
  console(): string {
    try { return readFileSync(join(this.dir, "console.log"), "utf8"); } catch { return ""; }
  }

  static async start(o: VmOptions): Promise<IpvsVm> {
    const t0 = performance.now();
    const dir = mkdtempSync(join(tmpdir(), "lvsflow-vm-"));
    const append = ["console=ttyS0", "panic=-1", "quiet", "loglevel=3", ...(o.ips ?? []).map((ip, i) => `lvf.ip${i}=${ip}`)];
    const args = [
      "-M", "q35", "-m", String(o.memMb ?? 512), "-smp", "1", "-accel", "tcg,thread=multi", "-cpu", "max",
      "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none", "-monitor", "none",
      "-serial", `file:${join(dir, "console.log")}`,
      "-kernel", join(o.image.dir, "vmlinux"), "-initrd", join(o.image.dir, "initrd.img"),
      "-device", "virtio-serial-pci",
      "-chardev", `socket,id=agent,path=${join(dir, "agent.sock")},server=on,wait=off`,
      "-device", "virtserialport,chardev=agent,name=lvf.agent",
      "-append", append.join(" "),
    ];
    (o.taps ?? []).forEach((tap, i) => {
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tap)) throw new Error(`invalid tap name ${tap}`);
      args.push("-netdev", `tap,id=n${i},ifname=${tap},script=no,downscript=no`, "-device", `virtio-net-pci,netdev=n${i},mac=52:54:00:12:34:5${i}`);
    });
    const argv = o.netns ? ["ip", "netns", "exec", o.netns, "qemu-system-x86_64", ...args] : ["qemu-system-x86_64", ...args];
    const proc = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    let exited: string | null = null;
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => { stderr += d; });
    proc.on("exit", (code, sig) => { exited = `qemu exited (${code ?? sig}): ${stderr.trim()}`; });
    proc.on("error", (e) => { exited = `qemu could not start: ${e.message}`; });
    const vm = new IpvsVm(proc, dir, 0);
    const deadline = Date.now() + (o.bootTimeoutMs ?? 120_000);
    try {
      // The agent announces itself on the console once it holds the port open.
      while (!vm.console().includes("LVF-AGENT-READY")) {
        if (exited) throw new Error(exited);
        if (Date.now() > deadline) throw new Error(`VM did not come up within ${o.bootTimeoutMs ?? 120_000} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
      await vm.connect();
    } catch (e) {
      const tail = vm.console().split("\n").slice(-15).join("\n");
      await vm.stop();
      throw new Error(`${(e as Error).message}\n--- guest console (last lines):\n${tail}`);
    }
    (vm as { bootMs: number }).bootMs = Math.round(performance.now() - t0);
    return vm;
  }

  private connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = connect(join(this.dir, "agent.sock"));
      s.once("connect", () => { this.sock = s; resolve(); });
      s.once("error", reject);
      s.on("data", (d: Buffer) => { this.buf = Buffer.concat([this.buf, d]); this.drain(); });
      s.on("close", () => this.fail("agent connection closed"));
    });
  }

  private fail(why: string) {
    this.broken ??= why;
    if (this.pending) { clearTimeout(this.pending.timer); this.pending.reject(new Error(why)); this.pending = null; }
  }

  private drain() {
    if (!this.pending) return;
    const nl = this.buf.indexOf(10);
    if (nl < 0) return;
    const m = /^RESULT (\d+) (\d+) (\d+)$/.exec(this.buf.subarray(0, nl).toString());
    if (!m) return this.fail(`bad agent reply: ${this.buf.subarray(0, Math.min(nl, 200)).toString()}`);
    const [rc, nout, nerr] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (this.buf.length < nl + 1 + nout + nerr) return;
    const stdout = this.buf.subarray(nl + 1, nl + 1 + nout).toString();
    const stderr = this.buf.subarray(nl + 1 + nout, nl + 1 + nout + nerr).toString();
    this.buf = this.buf.subarray(nl + 1 + nout + nerr);
    const p = this.pending;
    this.pending = null;
    clearTimeout(p.timer);
    p.resolve({ code: rc, stdout, stderr });
  }

  /** Runs argv in the guest (no shell). Rejects only when the agent is gone or times out. */
  exec(argv: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<CmdResult> {
    if (argv.length === 0 || argv.some((a) => /[\n\0]/.test(a))) return Promise.reject(new Error("exec: arguments must be non-empty and free of newlines"));
    const input = Buffer.from(opts.input ?? "");
    const run = () => new Promise<CmdResult>((resolve, reject) => {
      if (this.broken || !this.sock) return reject(new Error(`VM agent unusable: ${this.broken ?? "not connected"}`));
      const timeoutMs = opts.timeoutMs ?? 70_000;
      const timer = setTimeout(() => this.fail(`guest command timed out after ${timeoutMs} ms: ${argv.join(" ")}`), timeoutMs);
      this.pending = { resolve, reject, timer };
      this.sock.write(Buffer.concat([Buffer.from(`EXEC ${argv.length} ${input.length}\n${argv.map((a) => a + "\n").join("")}`), input]));
    });
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => {});
    return p;
  }

  /** Kills qemu by its PID (the VM has no disk, nothing to lose) and removes the work dir. */
  async stop(): Promise<void> {
    this.sock?.destroy();
    const p = this.proc;
    if (p.exitCode === null && p.signalCode === null) {
      const gone = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 3000);
      await gone;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
