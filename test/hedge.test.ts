// Hedged requests end to end: real hosts on loopback that answer by a script
// shared across them (the n-th request to arrive, whichever host it reaches,
// stalls, fails or answers), so what a test asserts does not depend on which
// host the balancer picks first. Counted on the upstreams and on the client's
// bytes, never timed: a stalled request waits until the proxy cancels it.

import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, expect, it } from 'vitest';
import { DIAGNOSTICS_CHANNELS, type AttemptMessage, type ProxyOptions, type UpstreamRegistry } from '../src/index.js';
import { listen, proxy, testRegistry } from './support.js';

/** What the n-th request to arrive meets: `stall` never answers (until the proxy lets go), `reset` has its socket destroyed, `slow-body` sends its head at once and its body after `ms`, `late` answers after `ms`. */
type Step = 'ok' | 'stall' | 'reset' | { kind: 'slow-body' | 'late'; ms: number };

interface Arrival {
  readonly host: number;
  readonly method: string;
  /** Settles when the request's connection closes: a cancelled attempt's socket is not leaked. */
  readonly closed: Promise<void>;
}

/** `count` hosts answering by one shared script; each answers with its own number in the body. */
async function fleet(count: number, script: Step[]) {
  const arrivals: Arrival[] = [];
  let arrived: () => void = () => undefined;
  const urls: string[] = [];
  for (let host = 0; host < count; host += 1) {
    const { url } = await listen((req: IncomingMessage, res: ServerResponse) => {
      const step = script[arrivals.length] ?? 'ok';
      const closed = new Promise<void>((resolve) => req.socket.once('close', () => resolve()));
      arrivals.push({ host, method: req.method ?? '', closed });
      arrived();
      req.resume();
      const answer = (): void => void res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(`host ${host}`.length) }).end(`host ${host}`);
      if (step === 'ok') answer();
      else if (step === 'reset') req.socket.destroy();
      else if (typeof step === 'object' && step.kind === 'late') setTimeout(answer, step.ms);
      else if (typeof step === 'object') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(`host ${host}`.length) });
        res.flushHeaders();
        setTimeout(() => res.end(`host ${host}`), step.ms);
      }
    });
    urls.push(url);
  }
  /** Settles once `n` requests have arrived in all. */
  const until = (n: number): Promise<void> =>
    new Promise((resolve) => {
      if (arrivals.length >= n) resolve();
      else
        arrived = () => {
          if (arrivals.length >= n) resolve();
        };
    });
  return { urls, arrivals, until };
}

async function gateway(options: ProxyOptions): Promise<{ url: string; registry: UpstreamRegistry }> {
  const registry = testRegistry();
  const { url } = await listen(proxy({ name: 'svc', balance: 'round-robin', registry, ...options }));
  return { url, registry };
}

interface Reply {
  readonly status: number;
  readonly text: string;
  readonly code: string | null;
}

function send(url: string, method = 'GET', body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('error', reject);
      res.once('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const problem = res.headers['content-type']?.startsWith('application/problem+json') === true;
        resolve({ status: res.statusCode ?? 0, text, code: problem ? (JSON.parse(text) as { code: string }).code : null });
      });
    });
    req.once('error', reject);
    // A body written in two pieces streams: the proxy cannot replay it.
    if (body === undefined) req.end();
    else {
      req.write(body.slice(0, 1));
      setImmediate(() => req.end(body.slice(1)));
    }
  });
}

/** Every byte the client receives on one connection, until the proxy closes it. */
async function rawGet(url: string): Promise<string> {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  await once(socket, 'connect');
  socket.write('GET /x HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'close');
  return Buffer.concat(chunks).toString('latin1');
}

const hedge = { delay: 20 } as const;

describe('hedged requests', () => {
  it('a hedge to another host wins when the first host stalls; the stalled attempt is cancelled and its socket closed', async () => {
    const hosts = await fleet(2, ['stall']);
    const { url, registry } = await gateway({ target: hosts.urls, hedge, timeout: { response: 10_000 } });
    const started: AttemptMessage[] = [];
    const onStart = (message: unknown): void => void started.push(message as AttemptMessage);
    subscribe(DIAGNOSTICS_CHANNELS.attemptStart, onStart);
    try {
      const reply = await send(`${url}/x`);

      const [first, second] = hosts.arrivals;
      expect(hosts.arrivals).toHaveLength(2);
      expect(second?.host).not.toBe(first?.host);
      expect(reply).toEqual({ status: 200, text: `host ${second?.host}`, code: null });
      await first?.closed;
      expect(started.map((m) => [m.attempt, m.hedge])).toEqual([
        [1, false],
        [2, true],
      ]);
      expect(registry.get('svc')?.hedge).toMatchObject({ hedges: 1, wins: 1, refused: 0 });
      // The loser is no failure: the stalled host stays in rotation; but the balancer learns it was slow.
      const snapshot = registry.get('svc');
      expect(snapshot?.hosts.map((h) => h.state)).toEqual(['healthy', 'healthy']);
      const stalled = snapshot?.hosts.find((h) => h.origin === hosts.urls[first?.host ?? -1]);
      expect(stalled?.latencyMs).toBeGreaterThanOrEqual(10);
    } finally {
      unsubscribe(DIAGNOSTICS_CHANNELS.attemptStart, onStart);
    }
  });

  it('writes exactly one response when both heads arrive close together', async () => {
    const hosts = await fleet(2, [{ kind: 'late', ms: 25 }]);
    const { url } = await gateway({ target: hosts.urls, hedge });

    const raw = await rawGet(url);

    expect(raw.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(raw.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    expect(raw.match(/host \d/g)).toHaveLength(1);
  });

  it('does not hedge a POST, nor a body it cannot replay', async () => {
    const hosts = await fleet(2, ['stall', 'stall']);
    const { url, registry } = await gateway({ target: hosts.urls, hedge: { ...hedge, methods: ['GET', 'PUT'] }, retry: false, timeout: { response: 150 } });

    const post = await send(`${url}/x`, 'POST');
    const put = await send(`${url}/x`, 'PUT', 'streamed body');

    expect([post.status, post.code]).toEqual([502, 'UPSTREAM_RESPONSE_TIMEOUT']);
    expect([put.status, put.code]).toEqual([502, 'UPSTREAM_RESPONSE_TIMEOUT']);
    expect(hosts.arrivals.map((a) => a.method)).toEqual(['POST', 'PUT']);
    expect(registry.get('svc')?.hedge).toMatchObject({ hedges: 0 });
  });

  it('does not hedge with a single host', async () => {
    const hosts = await fleet(1, ['stall']);
    const { url, registry } = await gateway({ target: hosts.urls, hedge, retry: false, timeout: { response: 150 } });

    const reply = await send(`${url}/x`);

    expect([reply.status, reply.code]).toEqual([502, 'UPSTREAM_RESPONSE_TIMEOUT']);
    expect(hosts.arrivals).toHaveLength(1);
    expect(registry.get('svc')?.hedge).toMatchObject({ hedges: 0 });
  });

  it('stops hedging once the budget is spent', async () => {
    const hosts = await fleet(2, ['stall', 'ok', 'stall']);
    const { url, registry } = await gateway({ target: hosts.urls, hedge: { ...hedge, budget: 0 }, retry: false, timeout: { response: 150 } });

    const first = await send(`${url}/x`);
    const second = await send(`${url}/x`);

    expect(first.status).toBe(200);
    expect([second.status, second.code]).toEqual([502, 'UPSTREAM_RESPONSE_TIMEOUT']);
    expect(hosts.arrivals).toHaveLength(3);
    expect(registry.get('svc')?.hedge).toMatchObject({ hedges: 1, refused: 1 });
  });

  it('sends no hedge when the deadline cannot fit one', async () => {
    const hosts = await fleet(2, ['stall']);
    const { url, registry } = await gateway({ target: hosts.urls, hedge: { delay: 30 }, retry: false, timeout: { total: 70 }, deadline: { margin: 10, minimum: 40 } });

    const reply = await send(`${url}/x`);

    expect([reply.status, reply.code]).toEqual([502, 'UPSTREAM_RESPONSE_TIMEOUT']);
    expect(hosts.arrivals).toHaveLength(1);
    expect(registry.get('svc')?.hedge).toMatchObject({ hedges: 0 });
  });

  it('retries on a third host when the first stalls past its timeout and the hedge fails', async () => {
    const hosts = await fleet(3, ['stall', 'reset', 'ok']);
    const { url, registry } = await gateway({ target: hosts.urls, hedge, retry: { minDelay: 1, maxDelay: 2 }, timeout: { response: 150 } });

    const reply = await send(`${url}/x`);

    expect(hosts.arrivals).toHaveLength(3);
    expect(new Set(hosts.arrivals.map((a) => a.host)).size).toBe(3);
    expect(reply).toEqual({ status: 200, text: `host ${hosts.arrivals[2]?.host}`, code: null });
    expect(registry.get('svc')?.hedge).toMatchObject({ hedges: 1, wins: 0 });
  });

  it('cancels every attempt when the client leaves', async () => {
    const hosts = await fleet(2, ['stall', 'stall']);
    const { url } = await gateway({ target: hosts.urls, hedge });

    const req = httpRequest(`${url}/x`, { agent: false });
    req.once('error', () => undefined);
    req.end();
    await hosts.until(2);
    req.destroy();

    await Promise.all(hosts.arrivals.map((a) => a.closed));
    expect(hosts.arrivals).toHaveLength(2);
  });

  it('sends no hedge once a response head has arrived, however slow its body', async () => {
    const hosts = await fleet(2, [{ kind: 'slow-body', ms: 120 }]);
    const { url, registry } = await gateway({ target: hosts.urls, hedge });

    const reply = await send(`${url}/x`);

    expect(reply).toEqual({ status: 200, text: `host ${hosts.arrivals[0]?.host}`, code: null });
    expect(hosts.arrivals).toHaveLength(1);
    expect(registry.get('svc')?.hedge).toMatchObject({ hedges: 0 });
  });

  it('sends no hedge without room under the concurrency limit, and refuses no one for it', async () => {
    const hosts = await fleet(2, ['stall']);
    const { url, registry } = await gateway({ target: hosts.urls, hedge, retry: false, breaker: { capacity: 1 }, timeout: { response: 150 } });

    const reply = await send(`${url}/x`);

    expect([reply.status, reply.code]).toEqual([502, 'UPSTREAM_RESPONSE_TIMEOUT']);
    expect(hosts.arrivals).toHaveLength(1);
    expect(registry.get('svc')).toMatchObject({ overloaded: 0, hedge: { hedges: 0 } });
  });

  it("names the winner's host in onFailure when the winner fails after its head, not the cancelled hedge's", async () => {
    // The first request to arrive answers its head and a few bytes once the hedge has arrived, then is cut; the hedge never answers.
    let first: ServerResponse | null = null;
    let firstHost = -1;
    const handler = (host: number) => (_req: IncomingMessage, res: ServerResponse): void => {
      if (first === null) {
        first = res;
        firstHost = host;
        return;
      }
      first.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10' });
      first.write('abc', () => first?.socket?.destroy());
    };
    const hosts = [await listen(handler(0)), await listen(handler(1))];
    const failures: string[] = [];
    const { url } = await gateway({ target: hosts.map((h) => h.url), hedge, retry: false, hooks: { onFailure: (event) => void failures.push(event.target) } });

    const raw = await rawGet(url);

    expect(raw.startsWith('HTTP/1.1 200')).toBe(true);
    expect(failures).toEqual([hosts[firstHost]?.url]);
  });
});
