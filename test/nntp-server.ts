// A real NNTP server for the prober's nntp check tests: nntp-server from npm (nodeca's RFC 3977
// reader server: greeting, command parsing and pipelining, GROUP/ARTICLE/LIST…) with a small
// in-memory news store behind it, on a free 127.0.0.1 port. The store holds one group with one
// article; `lvsflow.broken` stands for a group whose storage fails (the library answers 403).
import type { Socket } from "node:net";
import NntpServer from "nntp-server";

export interface NntpHandle {
  port: number;
  /** Commands the server received, in order (to see what a check sent). */
  commands: string[];
  stop(): Promise<void>;
}

interface Article { index: number; messageId: string; head: Record<string, string>; body: string[] }

export const NEWS_GROUP = "lvsflow.test";
export const BROKEN_GROUP = "lvsflow.broken";

const articles: Article[] = [{
  index: 1, messageId: "<1@lvsflow.test>",
  head: { From: "probe@example.test", Subject: "health", Date: "Wed, 25 Nov 2026 20:00:00 +0000", Newsgroups: NEWS_GROUP },
  body: ["the news spool works"],
}];

class NewsStore extends NntpServer {
  _selectGroup(session: NntpServer.Session, name: string): Promise<boolean> {
    if (name === BROKEN_GROUP) return Promise.reject(new Error("spool unreadable"));
    if (name !== NEWS_GROUP) return Promise.resolve(false);
    Object.assign(session.group, { name, min_index: 1, max_index: articles.length, total: articles.length, current_article: 1, description: "lvsflow tests" });
    return Promise.resolve(true);
  }
  _getGroups() {
    return Promise.resolve([{ name: NEWS_GROUP, min_index: 1, max_index: articles.length, total: articles.length, description: "lvsflow tests" }]);
  }
  _getArticle(session: NntpServer.Session, id: string): Promise<Article | null> {
    const byId = id.startsWith("<");
    if (!byId && session.group.name !== NEWS_GROUP) return Promise.resolve(null);
    return Promise.resolve(articles.find((a) => (byId ? a.messageId === id : a.index === Number(id))) ?? null);
  }
  _getRange(_s: NntpServer.Session, first: number, last: number) {
    return Promise.resolve(articles.filter((a) => a.index >= first && a.index <= last));
  }
  _buildHead(_s: NntpServer.Session, a: Article): string[] {
    return [...Object.entries(a.head).map(([k, v]) => `${k}: ${v}`), `Message-ID: ${a.messageId}`];
  }
  _buildBody(_s: NntpServer.Session, a: Article): string[] {
    return a.body;
  }
  _buildHeaderField(_s: NntpServer.Session, a: Article, field: string): string {
    const f = field.toLowerCase();
    if (f === "message-id") return a.messageId;
    if (f === ":bytes") return String(a.body.join("\r\n").length);
    if (f === ":lines") return String(a.body.length);
    return Object.entries(a.head).find(([k]) => k.toLowerCase() === f)?.[1] ?? "";
  }
}

/**
 * The library always greets with 201. A server that allows posting greets with 200, and one that
 * refuses service greets with 400 (temporarily) or 502 (permanently) and closes (RFC 3977
 * §5.1.1): this session class swaps only the greeting line; everything after is the library's.
 */
function greetingSession(line: string) {
  const refuses = !line.startsWith("2");
  const greeted = new WeakSet<object>();
  class Greeting extends NntpServer.Session {
    write(data: unknown): void {
      if (greeted.has(this)) return super.write(data);
      greeted.add(this); // the first write is the library's greeting, from Session's constructor
      super.write(refuses ? [line, null] : line);
    }
  }
  return { create: (server: NntpServer, stream: Socket) => new Greeting(server, stream) };
}

/** Starts the server; `greeting` replaces the library's 201 line (see greetingSession). */
export async function startNntpServer(opts: { greeting?: string } = {}): Promise<NntpHandle> {
  const commands: string[] = [];
  const srv = new NewsStore({ requireAuth: false, ...(opts.greeting ? { session: greetingSession(opts.greeting) } : {}) });
  const conns = new Set<Socket>();
  await srv.listen("nntp://127.0.0.1:0");
  srv.server.on("connection", (s: Socket) => {
    conns.add(s);
    s.on("close", () => conns.delete(s));
    // What the client sent, line by line (the library reads the same bytes through its own pipe).
    let tail = "";
    s.on("data", (d: Buffer) => {
      const lines = (tail + d.toString("latin1")).split("\r\n");
      tail = lines.pop() ?? "";
      commands.push(...lines);
    });
  });
  return {
    port: (srv.server.address() as { port: number }).port,
    commands,
    async stop() {
      for (const c of conns) c.destroy();
      await srv.close();
    },
  };
}
