// lvsflow schema events [TYPE]: the JSON Schema of the bus events, generated from the zod schemas
// in shared/schemas/events.ts, for programs that publish or consume them in other languages.
import { z } from "zod";
import { Event } from "../../shared/schemas/events.ts";

const USAGE = `lvsflow schema events [TYPE] [--output]
  the JSON Schema of every bus event (a oneOf over "type"), or of one event type (e.g. health.result).
  Without --output it describes what a publisher must send (defaults may be left out).
`;

export function eventTypes(): string[] {
  return Event.options.map((o) => (o.shape.type as z.ZodLiteral<string>).value);
}

export function eventSchema(type?: string, io: "input" | "output" = "input"): object {
  if (!type) return z.toJSONSchema(Event, { io, unrepresentable: "any" });
  const one = Event.options.find((o) => (o.shape.type as z.ZodLiteral<string>).value === type);
  if (!one) throw new Error(`unknown event type "${type}"; one of: ${eventTypes().join(", ")}`);
  return z.toJSONSchema(one, { io, unrepresentable: "any" });
}

// Resolves once written: the CLI exits right after, and a pipe would otherwise get only 64 KiB.
const stdout = (s: string) => new Promise<void>((r) => process.stdout.write(s, () => r()));

export async function schemaCommand(args: string[], io = { out: stdout, err: (s: string) => void process.stderr.write(s) }): Promise<number> {
  const [what, ...rest] = args;
  if (what !== "events") { io.err(USAGE); return 2; }
  const type = rest.find((a) => !a.startsWith("--"));
  try {
    await io.out(JSON.stringify(eventSchema(type, rest.includes("--output") ? "output" : "input"), null, 2) + "\n");
    return 0;
  } catch (e) {
    io.err(`lvsflow schema: ${(e as Error).message}\n`);
    return 2;
  }
}
