// Each phase timer ends the attempt with its own code and never before its
// time; time the client spends not reading, or not sending, is not charged to
// the upstream. Short real timeouts with wide margins; no speed assertions.

import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import request from 'supertest';
import { Agent } from 'undici';
import { describe, expect, it } from 'vitest';
import { faults, type Behaviour } from '../src/testing/index.js';
import { expressGateway, listen, onCleanup, rawGet, upstream } from './support.js';

const MiB = 1024 * 1024;

function timed<T>(work: Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  return work.then((value) => ({ value, ms: performance.now() - start }));
}

describe('per-phase timeouts', () => {
  it('connect covers DNS: a lookup that never answers ends as UPSTREAM_CONNECT_TIMEOUT', async () => {
    const dispatcher = new Agent({ connect: { lookup: () => undefined } });
    onCleanup(() => dispatcher.destroy());
    const app = expressGateway({ target: 'http://orders.test', dispatcher, timeout: { connect: 80 } });

    const { value: response, ms } = await timed(request(app).get('/api/x'));

    expect((response.body as { code: string }).code).toBe('UPSTREAM_CONNECT_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(78);
  });

  it('response never fires before its time', async () => {
    const { url } = await upstream({ fallback: faults.hang() });
    const { value: response, ms } = await timed(request(expressGateway({ target: url, timeout: { response: 120 } })).get('/api/x'));

    expect((response.body as { code: string }).code).toBe('UPSTREAM_RESPONSE_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(118);
  });

  it('response starts once the request is sent: a slow upload is not an upstream timeout', async () => {
    const up = await upstream({ fallback: faults.echo({ body: true }) });
    const gateway = await listen(expressGateway({ target: up.url, timeout: { response: 50 } }));

    const text = await new Promise<string>((resolve, reject) => {
      const client = httpRequest(`${gateway.url}/api/upload`, { method: 'POST', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.once('end', () => resolve(body));
      });
      client.once('error', reject);
      client.write('first half, ');
      // The client pauses for four response timeouts mid-upload.
      void delay(200).then(() => client.end('second half'));
    });

    expect(text).toBe('first half, second half');
  });

  it('idle: an upstream that stops reading a large upload ends as UPSTREAM_RESPONSE_TIMEOUT', async () => {
    // An upstream that accepts the connection and never reads from it.
    const connections: Socket[] = [];
    const server = createServer((socket: Socket) => {
      connections.push(socket);
      socket.pause();
      socket.on('error', () => undefined);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    onCleanup(async () => {
      for (const socket of connections) socket.destroy();
      server.close();
      await once(server, 'close');
    });
    const target = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const gateway = await listen(expressGateway({ target, timeout: { idle: 100 } }));

    const result = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const client = httpRequest(`${gateway.url}/api/upload`, { method: 'PUT', agent: false, headers: { 'content-length': 64 * MiB } }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      client.once('error', reject);
      const chunk = Buffer.alloc(MiB);
      let written = 0;
      const pump = (): void => {
        while (written < 64) {
          written += 1;
          if (!client.write(chunk)) {
            client.once('drain', pump);
            return;
          }
        }
        client.end();
      };
      pump();
    });

    expect(result.status).toBe(502);
    expect((JSON.parse(result.body) as { code: string }).code).toBe('UPSTREAM_RESPONSE_TIMEOUT');
  });

  it('idle does not count time the client spends not reading', async () => {
    const size = 16 * MiB;
    const body = Buffer.alloc(size, 'z');
    const slowClientSafe: Behaviour = ({ res }) => {
      res.writeHead(200, { 'content-length': size });
      res.end(body);
    };
    const { url } = await upstream({ fallback: slowClientSafe });
    // Wide margins: a loaded machine can stall the event loop for tens of milliseconds.
    const gateway = await listen(expressGateway({ target: url, timeout: { idle: 250 } }));

    const received = await new Promise<{ bytes: number; complete: boolean }>((resolve, reject) => {
      httpRequest(`${gateway.url}/api/big`, { agent: false }, (res) => {
        let bytes = 0;
        res.pause();
        // The client stops reading for four idle timeouts before draining.
        void delay(1000).then(() => {
          res.on('data', (chunk: Buffer) => (bytes += chunk.length));
          // 'close' too: a cut body must fail the assertion, not time the test out.
          res.once('close', () => resolve({ bytes, complete: res.complete }));
          res.resume();
        });
      })
        .once('error', reject)
        .end();
    });

    expect(received).toStrictEqual({ bytes: size, complete: true });
  });

  it('one timer for every phase: a response slower than `connect` is still on time, and each body chunk restarts `idle`', async () => {
    // The head comes 250 ms after the request (connect is 60 ms, response
    // 2 s), then ten chunks 60 ms apart (idle is 150 ms): 850 ms in all,
    // past every phase's own time, and nothing late.
    const slowButSteady: Behaviour = ({ res }) => {
      const timers = [setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).flushHeaders(), 250)];
      for (let i = 1; i <= 10; i += 1) timers.push(setTimeout(() => (i === 10 ? res.end('.') : res.write('.')), 250 + i * 60));
      res.once('close', () => timers.forEach(clearTimeout));
    };
    const { url } = await upstream({ fallback: slowButSteady });
    const gateway = await listen(expressGateway({ target: url, timeout: { connect: 60, response: 2000, idle: 150 } }));

    const result = await rawGet(`${gateway.url}/api/steady`);

    expect(result.status).toBe(200);
    expect(result.ending).toBe('complete');
    expect(result.body.toString()).toBe('..........');
  });

  it('idle is the whole idle between chunks after a head that came alone (the 100 ms head hold counts toward the first gap only)', async () => {
    // The head comes alone; then a chunk 950 ms later and another 950 ms
    // after that, each within idle (1000 ms), but past idle minus the hold.
    const slowChunks: Behaviour = ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' }).flushHeaders();
      const timers = [setTimeout(() => res.write('a'), 950), setTimeout(() => res.end('b'), 1900)];
      res.once('close', () => timers.forEach(clearTimeout));
    };
    const { url } = await upstream({ fallback: slowChunks });
    const gateway = await listen(expressGateway({ target: url, timeout: { idle: 1000 } }));

    const result = await rawGet(`${gateway.url}/api/chunks`);

    expect(result.ending).toBe('complete');
    expect(result.body.toString()).toBe('ab');
  });

  it('a phase shorter than the one before it fires at its own time: response 100 ms after a 5 s connect', async () => {
    const { url } = await upstream({ fallback: faults.hang() });
    const { value: response, ms } = await timed(request(expressGateway({ target: url, timeout: { connect: 5000, response: 100 } })).get('/api/x'));

    expect(response.status).toBe(502);
    expect((response.body as { code: string }).code).toBe('UPSTREAM_RESPONSE_TIMEOUT');
    expect(ms).toBeGreaterThanOrEqual(98);
    expect(ms).toBeLessThan(4000);
  });

  it('total bounds the exchange even while the body keeps trickling', async () => {
    const trickle: Behaviour = ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      const interval = setInterval(() => res.write('.'), 10);
      res.once('close', () => clearInterval(interval));
    };
    const { url } = await upstream({ fallback: trickle });
    const gateway = await listen(expressGateway({ target: url, timeout: { idle: 1000, total: 150 } }));

    const { value: result, ms } = await timed(rawGet(`${gateway.url}/api/stream`));

    expect(result.ending).toBe('truncated');
    expect(ms).toBeGreaterThanOrEqual(148);
  });
});
