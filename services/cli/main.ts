// lvsflow: one program for every service and tool.
import { runCommand } from "./run.ts";
import { auditCommand } from "./audit.ts";
import { statusCommand } from "./status.ts";

const USAGE = `lvsflow — highly available load balancing with Linux kernel rules, NATS and Redis

  lvsflow run <prober|controller|executor|recorder|node> [options]   run a service
  lvsflow config check FILE… [--format F] [--json] [--strict]         validate ldirectord.cf / keepalived.conf / YAML
  lvsflow config convert FILE… --to yaml                              the native form of a configuration
  lvsflow config schema                                               JSON Schema of the native file
  lvsflow schema events [TYPE]                                        JSON Schema of the bus events (for publishers in any language)
  lvsflow config push FILE… | history | diff A B | show V             configuration versions in Redis, live reload
  lvsflow lab up [--witness] | down | status                          the seed's cluster in network namespaces
  lvsflow audit [--since T] [--vs V] [--real R] [--type T] [--json]   recorded history, in order; audit export: NDJSON
  lvsflow why <vip[:port]|real> [--at TIME]                           causal chain: evidence → decision → kernel, with latencies
  lvsflow replay --from T [--to T]                                    replay recorded controller inputs, compare the decisions
  lvsflow security init --out DIR --config FILE [--tls]               credentials and nats/redis server configs per role
  lvsflow status [--json] [--watch]                                   who owns what, which reals serve
  lvsflow drain <vip:port> <real> [--timeout 5m]                      weight 0, then out of the pool when its connections end
  lvsflow enable|disable <real>                                       put a real back / take it out of every virtual service
  lvsflow maintenance <real> on|off                                   weight 0 until off (survives reloads and restarts)
  lvsflow weight <vip:port> <real> <N|config>                         set a real's weight at runtime
  lvsflow failover <group> [--to NODE | --auto]                       planned move of a floating group
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "run": return runCommand(rest);
    case "config": return (await import("./config.ts")).configCommand(rest);
    case "schema": return (await import("./schema.ts")).schemaCommand(rest);
    case "lab": return (await import("../lab/main.ts")).labCommand(rest);
    case "audit": return auditCommand(rest);
    case "why": return (await import("./why.ts")).whyCommand(rest);
    case "replay": return (await import("./replay.ts")).replayCommand(rest);
    case "status": return statusCommand(rest);
    case "security": return (await import("./security.ts")).securityCommand(rest);
    case "drain": case "enable": case "disable": case "maintenance": case "weight": case "failover":
      return (await import("../commands/cli.ts")).operatorCommand(cmd, rest);
    case undefined: case "help": case "--help": case "-h":
      process.stdout.write(USAGE);
      return cmd ? 0 : 2;
    default:
      process.stderr.write(`lvsflow: unknown command "${cmd}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => {
  process.stderr.write(`lvsflow: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
