// What every request of one proxy shares: its options, its upstream's state,
// its response rewriter and its stale layer.

import type { ResolvedOptions } from '../options.js';
import type { StaleLayer } from '../stale/layer.js';
import type { UpstreamState } from '../upstream/registry.js';
import type { ResponseRewriter } from './response-rewrite.js';

/** What every exchange of one proxy shares: its options and its upstream's state. */
export interface ProxyCore {
  readonly config: ResolvedOptions;
  readonly upstream: UpstreamState;
  readonly rewrite: ResponseRewriter | null;
  /** Stale on error, when `staleIfError` is on. */
  readonly stale?: StaleLayer | null | undefined;
}
