// The options of the error contract: which upstream statuses are failures
// (`failureStatuses`), the status sent for a failure (`status`) and the
// proxy's name in `Proxy-Status` (`proxyName`); their defaults and checks.

import { fail, optionalString } from '../option-checks.js';
import type { FailureCode, ProxyStatusError } from './failures.js';

export type StatusOption = number | ((code: FailureCode, proxyStatus: ProxyStatusError | null) => number);

export const CONTRACT_DEFAULTS = Object.freeze({
  failureStatuses: Object.freeze([502, 503, 504]),
  status: 502,
  proxyName: 'resilient-proxy',
});

export function resolveFailureStatuses(value: unknown): ReadonlySet<number> {
  if (value === undefined) return new Set(CONTRACT_DEFAULTS.failureStatuses);
  if (!Array.isArray(value)) fail('failureStatuses', 'an array of HTTP status codes (100-599)', value);
  for (const status of value) {
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) {
      fail('failureStatuses', 'an array of HTTP status codes (100-599)', status);
    }
  }
  return new Set(value as number[]);
}

export function resolveStatus(value: unknown): StatusOption {
  if (value === undefined) return CONTRACT_DEFAULTS.status;
  if (typeof value === 'function') return value as StatusOption;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 400 || value > 599) {
    fail('status', 'an HTTP error status (400-599) or a function of the failure code', value);
  }
  return value;
}

const TOKEN = /^[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*$/;

export function resolveProxyName(value: unknown): string {
  return optionalString('proxyName', value, TOKEN, 'an RFC 8941 token such as "gateway"') ?? CONTRACT_DEFAULTS.proxyName;
}
