import http from 'node:http';

/**
 * A keep-alive HTTP/1.1 client on node:http (undici is not installed, and node:http needs no
 * dependency). The agent holds at most `sockets` connections: the load drivers keep in-flight
 * requests at or under that, so a request never waits inside the agent.
 */
export class Client {
  private readonly agent: http.Agent;
  private readonly host: string;
  private readonly port: number;
  private readonly headers: http.OutgoingHttpHeaders;

  constructor(base: string, token: string, sockets: number) {
    const url = new URL(base);
    this.host = url.hostname;
    this.port = Number(url.port);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
    this.headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  }

  /** Sends a request; resolves with the status and the parsed JSON body (undefined when empty). */
  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: this.host,
          port: this.port,
          method,
          path,
          agent: this.agent,
          headers:
            payload === undefined
              ? { authorization: this.headers.authorization }
              : { ...this.headers, 'content-length': Buffer.byteLength(payload) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            try {
              resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
            } catch {
              reject(new Error(`${method} ${path}: ${res.statusCode} with a body that is not JSON: ${text}`));
            }
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
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
    this.agent.destroy();
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
