// Faults that happen before any upstream server is involved — DNS, routing,
// a connect that never completes, a closed port — produced on loopback by
// undici dispatchers to pass as the proxy's `dispatcher` option.

import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
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

/** A loopback URL on which nothing listens: connecting to it is refused. */
export async function refusedUrl(host = '127.0.0.1'): Promise<string> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}
