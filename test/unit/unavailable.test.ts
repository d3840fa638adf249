import net from 'node:net';
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpError, isUnavailable } from '../../api/errors';
import { connectDatabase } from '../../db/client';

/** The errors the libraries really throw when nothing answers: a closed port, a silent listener. */
let silent: net.Server;
let silentPort: number;
const held = new Set<net.Socket>();
const closedPort = 1;

beforeAll(async () => {
  silent = net.createServer((socket) => {
    held.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentPort = (silent.address() as net.AddressInfo).port;
});
afterAll(async () => {
  for (const socket of held) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
});

async function errorOf(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}

describe('isUnavailable', () => {
  it('knows Postgres refusing connections, through drizzle', async () => {
    const database = connectDatabase(`postgres://postgres@127.0.0.1:${closedPort}/x`, { max: 1, connectTimeoutSeconds: 1 });
    const err = await errorOf(() => database.db.execute(sql`select 1`));
    await database.close();
    expect(isUnavailable(err)).toBe(true);
  });

  it('knows Postgres not answering within connect_timeout', async () => {
    const database = connectDatabase(`postgres://postgres@127.0.0.1:${silentPort}/x`, { max: 1, connectTimeoutSeconds: 0.3 });
    const err = await errorOf(() => database.db.execute(sql`select 1`));
    await database.close();
    expect((err as Error & { cause?: { code?: string } }).cause?.code).toBe('CONNECT_TIMEOUT');
    expect(isUnavailable(err)).toBe(true);
  });

  it.each(['57P01', '57P03', '08006', '53300'])('knows the SQLSTATE %s of a server that cannot serve now', (code) => {
    expect(isUnavailable(new postgres.PostgresError({ code, message: 'x' } as never))).toBe(true);
  });

  it('knows Temporal unreachable, and not answering within the deadline', async () => {
    for (const port of [closedPort, silentPort]) {
      const connection = await Connection.lazy({ address: `127.0.0.1:${port}` });
      const client = new Client({ connection });
      const err = await errorOf(() => connection.withDeadline(Date.now() + 500, () => client.workflow.getHandle('x').describe()));
      await connection.close();
      expect(isUnavailable(err)).toBe(true);
    }
  });

  it('knows a Temporal client whose connection was closed', async () => {
    const connection = await Connection.lazy({ address: `127.0.0.1:${closedPort}` });
    await connection.close();
    const err = await errorOf(() => new Client({ connection }).workflow.getHandle('x').describe());
    expect(isUnavailable(err)).toBe(true);
  });

  it.each([
    ['a caller error', new HttpError(400, 'bad')],
    ['a constraint violation', new postgres.PostgresError({ code: '23505', message: 'duplicate key' } as never)],
    ['a missing workflow', new WorkflowNotFoundError('gone', 'x', undefined)],
    ['a bug', new TypeError('x is undefined')],
    ['not an error', 'ECONNREFUSED'],
    ['nothing', undefined],
  ])('leaves %s alone', (_name, err) => {
    expect(isUnavailable(err)).toBe(false);
  });
});
