import pino from 'pino';
import { installProcessHandlers } from '../../src/main.js';

// A process with the server's handlers that then fails the two ways nobody catches: it must log
// both at error level and carry on (test/process/operations.test.ts).
const counted: string[] = [];
installProcessHandlers(pino(), (kind) => counted.push(kind));
void Promise.reject(new Error('rejected on purpose'));
setTimeout(() => {
  throw new Error('thrown on purpose');
}, 10);
setTimeout(() => {
  process.stdout.write(`still serving after ${counted.join(', ')}\n`);
}, 300);
