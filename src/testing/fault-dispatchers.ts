// Faults that happen before any upstream server is involved — DNS, routing,
// a connect that never completes, a closed port — produced on loopback by
// undici dispatchers to pass as the proxy's `dispatcher` option.

import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { Agent } from 'undici';

function systemError(code: string, syscall: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, syscall });
}

/** A dispatcher whose DNS lookups fail with `code` (`ENOTFOUND`, `EAI_AGAIN`, …). */
export function dnsFailureDispatcher(code = 'ENOTFOUND'): Agent {
  return new Agent({
    connect: {
      lookup: (hostname, _options, callback) => {
        const error = Object.assign(systemError(code, 'getaddrinfo', `getaddrinfo ${code} ${hostname}`), { hostname });
        process.nextTick(() => {
          callback(error, '', 4);
        });
      },
    },
  });
}

/** A dispatcher whose connections never complete: the proxy's connect timeout must fire. */
export function connectHangDispatcher(): Agent {
  return new Agent({ connect: () => undefined });
}

/** A dispatcher whose connections fail at once with `code` (`EHOSTUNREACH`, `ENETUNREACH`, `EACCES`). */
export function unreachableDispatcher(code = 'EHOSTUNREACH'): Agent {
  return new Agent({
    connect: (_options, callback) => {
      setImmediate(() => {
        callback(systemError(code, 'connect', `connect ${code}`), null);
      });
    },
  });
}

/** The first port of the kernel's ephemeral range, from which port-0 listeners are served. */
function ephemeralStart(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 2048) return low;
  } catch {
    // Not Linux: fall through to the IANA default.
  }
  return 49152;
}

function refuses(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

/**
 * A loopback URL on which nothing listens: connecting to it is refused. The
 * port lies below the ephemeral range, so no listener on port 0 (another test
 * running in parallel, say) can be handed it a moment later, as it could a
 * port just freed by closing a server.
 */
export async function refusedUrl(host = '127.0.0.1'): Promise<string> {
  const high = ephemeralStart();
  const low = Math.min(10_000, high - 1024);
  for (let tries = 0; tries < 100; tries += 1) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await refuses(host, port)) return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }
  throw new Error(`no port in ${low}-${high - 1} refused connections on ${host}`);
}
