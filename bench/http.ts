import net from 'node:net';

/**
 * A lean keep-alive HTTP/1.1 client straight on TCP sockets, for load generation.
 *
 * Why not node:http: on this 2-core machine the load generator shares the CPU with the server and
 * PostgreSQL, and node:http's client spent ~185 µs of CPU per request (44% of a core at 2,400
 * requests/s) — CPU the server under test then lacks. This one writes a prebuilt request head and
 * parses only the status line and Content-Length (or a chunked body), like wrk does: ~5× less.
 *
 * At most `sockets` connections, one request in flight on each (no pipelining); further requests
 * wait for a free socket. The load drivers keep in-flight requests at or under `sockets`.
 */
export class Client {
  private readonly host: string;
  private readonly port: number;
  private readonly auth: string;
  private readonly idle: Connection[] = [];
  private readonly waiting: Array<(c: Connection) => void> = [];
  private readonly all = new Set<Connection>();
  private closed = false;

  constructor(
    base: string,
    token: string,
    private readonly sockets: number,
  ) {
    const url = new URL(base);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.auth = `Bearer ${token}`;
  }

  /** Sends a request; resolves with the status and the parsed JSON body (undefined when empty). */
  async request(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const payload = body === undefined ? '' : JSON.stringify(body);
    const head =
      `${method} ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\nauthorization: ${this.auth}\r\n` +
      (body === undefined
        ? '\r\n'
        : `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\n\r\n`);
    const conn = await this.acquire();
    let res: RawResponse;
    try {
      res = await conn.send(head + payload);
    } catch (err) {
      this.discard(conn);
      throw new Error(`${method} ${path}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (res.close) this.discard(conn);
    else this.release(conn);
    const text = res.body.toString('utf8');
    try {
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    } catch {
      throw new Error(`${method} ${path}: ${res.status} with a body that is not JSON: ${text.slice(0, 500)}`);
    }
  }

  /** Like `request`, but anything other than `expected` is an error naming the response. */
  async expect<T>(expected: number, method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body);
    if (res.status !== expected)
      throw new Error(
        `${method} ${path}: expected ${expected}, got ${res.status}: ${JSON.stringify(res.body)}`,
      );
    return res.body as T;
  }

  close() {
    this.closed = true;
    for (const c of this.all) c.destroy();
    this.all.clear();
    this.idle.length = 0;
  }

  private acquire(): Promise<Connection> {
    if (this.closed) return Promise.reject(new Error('the client is closed'));
    // A connection the server closed while it sat idle is dropped, not used.
    for (let idle = this.idle.pop(); idle; idle = this.idle.pop()) {
      if (!idle.dead) return Promise.resolve(idle);
      idle.destroy();
      this.all.delete(idle);
    }
    if (this.all.size < this.sockets) {
      const c = new Connection(this.host, this.port);
      this.all.add(c);
      return Promise.resolve(c);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(c: Connection) {
    const next = this.waiting.shift();
    if (next) next(c);
    else this.idle.push(c);
  }

  private discard(c: Connection) {
    c.destroy();
    this.all.delete(c);
    const next = this.waiting.shift();
    if (next) {
      const fresh = new Connection(this.host, this.port);
      this.all.add(fresh);
      next(fresh);
    }
  }
}

interface RawResponse {
  status: number;
  body: Buffer;
  /** The server will close the connection after this response. */
  close: boolean;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/** One TCP connection carrying one request at a time. */
class Connection {
  private readonly socket: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private pending: { resolve: (r: RawResponse) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;

  constructor(host: string, port: number) {
    this.socket = net.connect({ host, port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      this.parse();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      const p = this.pending;
      this.pending = undefined;
      p?.reject(err);
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail(new Error('the server closed the connection')));
  }

  send(request: string): Promise<RawResponse> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket.write(request);
    });
  }

  get dead(): boolean {
    return this.failure !== undefined;
  }

  destroy() {
    this.socket.destroy();
  }

  private parse() {
    const end = this.buf.indexOf(CRLF2);
    if (end < 0) return;
    const head = this.buf.toString('latin1', 0, end);
    const status = Number(head.slice(9, 12));
    const lower = head.toLowerCase();
    const close = /\r\nconnection: *close/.test(lower);
    const length = /\r\ncontent-length: *(\d+)/.exec(lower);
    const start = end + 4;
    let body: Buffer;
    let rest: Buffer;
    if (length) {
      const n = Number(length[1]);
      if (this.buf.length < start + n) return;
      body = this.buf.subarray(start, start + n);
      rest = this.buf.subarray(start + n);
    } else if (/\r\ntransfer-encoding: *chunked/.test(lower)) {
      const chunks: Buffer[] = [];
      let at = start;
      for (;;) {
        const lineEnd = this.buf.indexOf('\r\n', at);
        if (lineEnd < 0) return;
        const size = Number.parseInt(this.buf.toString('latin1', at, lineEnd), 16);
        if (this.buf.length < lineEnd + 2 + size + 2) return;
        if (size === 0) {
          rest = this.buf.subarray(lineEnd + 4);
          break;
        }
        chunks.push(this.buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        at = lineEnd + 2 + size + 2;
      }
      body = Buffer.concat(chunks);
    } else {
      body = Buffer.alloc(0); // no body (204, 304) or none announced
      rest = this.buf.subarray(start);
    }
    this.buf = rest.length ? Buffer.from(rest) : Buffer.alloc(0);
    const p = this.pending;
    this.pending = undefined;
    p?.resolve({ status, body: Buffer.from(body), close });
  }
}

/** Runs `fn` over `items` with at most `limit` at a time, in order of start. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
