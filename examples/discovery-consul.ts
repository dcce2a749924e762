// Recipe (docs/groups.md, "Discovery: hosts from DNS or any registry"): a group's hosts
// from Consul's HTTP API with blocking queries, through `target: { discover }`.
// Type-checked with the examples; it needs a Consul agent, so CI does not run it.

import { createProxy, type Discover } from 'resilient-proxy';

interface ConsulEntry {
  readonly Node: { readonly Address: string };
  readonly Service: { readonly Address: string; readonly Port: number; readonly Weights?: { readonly Passing?: number } };
}

/**
 * The passing instances of `service`, each time they change. A blocking query
 * waits up to `wait` for a change past the index it was given (Consul's
 * `X-Consul-Index`), so there is one long request at a time, not polling.
 */
export function consulDiscover(consul: string, service: string, wait = '55s'): Discover {
  return async function* watchConsul(signal) {
    let index = '0';
    for (;;) {
      const url = new URL(`/v1/health/service/${encodeURIComponent(service)}`, consul);
      url.searchParams.set('passing', 'true');
      url.searchParams.set('index', index);
      url.searchParams.set('wait', wait);
      // A failure throws: the proxy keeps the last good hosts, reports it, and calls consulDiscover again after its backoff.
      const response = await fetch(url, { signal });
      if (!response.ok) throw new Error(`Consul answered ${response.status} for ${service}.`);
      const next = response.headers.get('x-consul-index') ?? '0';
      const entries = (await response.json()) as ConsulEntry[];
      if (next === index) continue; // the wait ended with no change
      // Consul's advice: an index that goes backwards starts over.
      index = Number(next) < Number(index) ? '0' : next;
      yield entries.map((entry) => ({
        url: `http://${entry.Service.Address || entry.Node.Address}:${entry.Service.Port}`,
        weight: Math.min(1000, Math.max(1, entry.Service.Weights?.Passing ?? 1)),
      }));
    }
  };
}

export const orders = createProxy({
  name: 'orders',
  target: { discover: consulDiscover('http://127.0.0.1:8500', 'orders') },
});
