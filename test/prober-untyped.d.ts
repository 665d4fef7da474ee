// Minimal typings for the npm packages the prober tests start real servers with (they ship none).
declare module "radius" {
  interface Decoded { code: string; identifier: number; attributes: Record<string, unknown> }
  const radius: {
    decode(o: { packet: Buffer; secret: string }): Decoded;
    encode_response(o: { packet: Decoded; code: string; secret: string; attributes?: unknown[] }): Buffer;
  };
  export default radius;
}
declare module "sip" {
  interface SipStack { send(m: unknown): void; destroy(): void }
  const sip: {
    create(options: Record<string, unknown>, onRequest: (rq: { method: string }) => void): SipStack;
    makeResponse(rq: unknown, status: number, reason: string): unknown;
  };
  export default sip;
}
declare module "ldapjs" {
  interface LdapServer { bind(dn: string, h: (req: any, res: any, next: any) => void): void; search(dn: string, h: (req: any, res: any, next: any) => void): void; listen(port: number, host: string, cb: () => void): void; address(): { port: number }; close(cb?: () => void): void }
  const ldap: { createServer(o?: { certificate?: Buffer | string; key?: Buffer | string }): LdapServer; InvalidCredentialsError: new () => Error };
  export default ldap;
}
declare module "nntp-server" {
  import type { Server, Socket } from "node:net";
  class NntpServer {
    constructor(options?: { requireAuth?: boolean; session?: { create(server: NntpServer, stream: Socket): unknown } });
    listen(address: string): Promise<void>;
    close(): Promise<void>;
    server: Server;
  }
  namespace NntpServer {
    class Session {
      constructor(server: NntpServer, stream: Socket);
      group: { name: string | null; min_index: number; max_index: number; total: number; current_article: number; description: string };
      write(data: unknown): void;
    }
  }
  export default NntpServer;
}
