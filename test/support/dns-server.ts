import { createSocket, type RemoteInfo } from 'node:dgram';

/** A minimal authoritative DNS server on loopback UDP, answering TXT queries from an in-memory zone. */
export interface TestDnsServer {
  /** '127.0.0.1:PORT', ready for `Resolver#setServers`. */
  address: string;
  setTxt(name: string, values: string[]): void;
  /** Forgets one name (then NXDOMAIN), or every name. */
  clear(name?: string): void;
  close(): Promise<void>;
}

const TYPE_TXT = 16;
const CLASS_IN = 1;
const HEADER_LEN = 12;

// Header flag bits (RFC 1035 §4.1.1).
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_RD = 0x0100;
const OPCODE_MASK = 0x7800;
const RCODE_FORMERR = 1;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/**
 * Reads the single question's QNAME, returning the name and where the question (QNAME + QTYPE +
 * QCLASS) ends. Queries carry no compression pointers, so one is treated as malformed.
 */
function parseQuestion(msg: Buffer): { name: string; type: number; end: number } | undefined {
  const labels: string[] = [];
  let pos = HEADER_LEN;
  for (;;) {
    const len = msg[pos];
    if (len === undefined || (len & 0xc0) !== 0) return undefined;
    pos += 1;
    if (len === 0) break;
    if (pos + len > msg.length) return undefined;
    labels.push(msg.toString('latin1', pos, pos + len));
    pos += len;
  }
  if (pos + 4 > msg.length) return undefined;
  return { name: normalize(labels.join('.')), type: msg.readUInt16BE(pos), end: pos + 4 };
}

/** One TXT resource record; its name is a pointer to the question's QNAME at offset 12 (0xC00C). */
function txtRecord(value: string): Buffer {
  // RDATA is a run of <length byte><bytes> character-strings, each at most 255 bytes, so longer
  // values are split; an empty value is still one zero-length string.
  const bytes = Buffer.from(value, 'utf8');
  const chunks: Buffer[] = [];
  let off = 0;
  do {
    const part = bytes.subarray(off, off + 255);
    chunks.push(Buffer.from([part.length]), part);
    off += 255;
  } while (off < bytes.length);
  const rdata = Buffer.concat(chunks);

  const fixed = Buffer.alloc(12);
  fixed.writeUInt16BE(0xc00c, 0); // NAME: compression pointer to the question name
  fixed.writeUInt16BE(TYPE_TXT, 2);
  fixed.writeUInt16BE(CLASS_IN, 4);
  fixed.writeUInt32BE(0, 6); // TTL 0: resolvers must not cache, so setTxt/clear show up at once
  fixed.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([fixed, rdata]);
}

function header(query: Buffer, rcode: number, qdcount: number, ancount: number): Buffer {
  const h = Buffer.alloc(HEADER_LEN);
  const qflags = query.readUInt16BE(2);
  h.writeUInt16BE(query.readUInt16BE(0), 0); // ID echoed
  h.writeUInt16BE(FLAG_QR | FLAG_AA | (qflags & (OPCODE_MASK | FLAG_RD)) | rcode, 2);
  h.writeUInt16BE(qdcount, 4);
  h.writeUInt16BE(ancount, 6);
  // NSCOUNT and ARCOUNT stay 0: no authority section, and any EDNS OPT in the query is ignored.
  return h;
}

function answer(query: Buffer, zone: Map<string, string[]>): Buffer | undefined {
  if (query.length < HEADER_LEN || (query.readUInt16BE(2) & FLAG_QR) !== 0) return undefined;
  if ((query.readUInt16BE(2) & OPCODE_MASK) !== 0) return header(query, RCODE_NOTIMP, 0, 0);
  const q = query.readUInt16BE(4) === 1 ? parseQuestion(query) : undefined;
  if (!q) return header(query, RCODE_FORMERR, 0, 0);

  // The question is echoed byte for byte, which also keeps the client's letter case.
  const question = query.subarray(HEADER_LEN, q.end);
  const values = zone.get(q.name);
  if (values === undefined) return Buffer.concat([header(query, RCODE_NXDOMAIN, 1, 0), question]);
  // Any other type (A, AAAA, ...) for a known name: NOERROR with no answers ("no data").
  const records = q.type === TYPE_TXT ? values.map(txtRecord) : [];
  return Buffer.concat([header(query, 0, 1, records.length), question, ...records]);
}

/** Starts a server on 127.0.0.1 with an OS-chosen port. */
export async function startDnsServer(): Promise<TestDnsServer> {
  const zone = new Map<string, string[]>();
  const socket = createSocket('udp4');

  socket.on('message', (msg: Buffer, from: RemoteInfo) => {
    const reply = answer(msg, zone);
    if (reply) socket.send(reply, from.port, from.address);
  });

  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  // After binding, a send failure (e.g. the client went away) must not crash the test process.
  socket.on('error', () => {});

  return {
    address: `127.0.0.1:${socket.address().port}`,
    setTxt(name, values) {
      zone.set(normalize(name), [...values]);
    },
    clear(name) {
      if (name === undefined) zone.clear();
      else zone.delete(normalize(name));
    },
    close() {
      return new Promise((resolve) => socket.close(() => resolve()));
    },
  };
}
