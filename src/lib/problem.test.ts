import { describe, expect, it } from 'vitest';
import { AppError, toProblem } from './problem.js';

const frames = (err: Error) => (err.stack ?? '').split('\n').filter((l) => l.trimStart().startsWith('at '));

describe('AppError', () => {
  it('carries no stack trace for a client error, and leaves the trace limit as it was', () => {
    const before = Error.stackTraceLimit;
    const err = new AppError('insufficient_credits', 'Balance 0 is below 1');
    expect(Error.stackTraceLimit).toBe(before);
    expect(frames(err)).toEqual([]);
    expect(err.message).toBe('Balance 0 is below 1');
    expect(err).toBeInstanceOf(Error);
    expect(toProblem(err, 'req_1')).toMatchObject({ status: 402, code: 'insufficient_credits' });
    // Other errors still get their traces.
    expect(frames(new Error('plain')).length).toBeGreaterThan(0);
  });

  it('keeps the stack trace of a server error, for the log', () => {
    expect(frames(new AppError('internal_error')).length).toBeGreaterThan(0);
    expect(frames(new AppError('service_unavailable')).length).toBeGreaterThan(0);
  });
});
