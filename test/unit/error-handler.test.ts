import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorHandler } from '../../api/errors';
import { rawRequest } from '../helpers/raw-http';

/** The framework's own 4xx errors, raised outside any guard the API puts in front of its routes. */
describe('errorHandler', () => {
  const logged: unknown[] = [];
  let baseUrl: string;
  let close: () => void;

  beforeAll(async () => {
    const app = express();
    app.get('/things/:id', (req, res) => {
      res.json({ id: req.params.id });
    });
    app.get('/boom', () => {
      throw new Error('a bug');
    });
    app.use(errorHandler({ unavailable: (err) => logged.push(err), unhandled: (err) => logged.push(err) }));
    const server = await new Promise<import('node:http').Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => server.close();
  });
  afterAll(() => close?.());

  it('answers 400 to a path parameter that is not valid percent-encoding', async () => {
    const res = await rawRequest(baseUrl, { method: 'GET', path: '/things/%E0%A4%A' });
    expect({ status: res.status, error: res.json?.error }).toEqual({ status: 400, error: "Failed to decode param '%E0%A4%A'" });
  });

  it('still answers 500 to a bug, and logs it', async () => {
    const res = await rawRequest(baseUrl, { method: 'GET', path: '/boom' });
    expect({ status: res.status, error: res.json?.error }).toEqual({ status: 500, error: 'internal error' });
    expect(logged).toHaveLength(1);
  });
});
