// The `breaker` option: the upstream's circuit breaker and its fixed
// concurrency cap, their defaults and their check.

import { checkKeys, fail, isPlainObject, positive } from '../option-checks.js';
import type { BreakerOptions } from './breaker.js';

export const BREAKER_DEFAULTS = Object.freeze({
  errorThresholdPercentage: 50,
  volumeThreshold: 100,
  resetTimeout: 5_000,
  probeTimeout: 2_000,
  rollingCountTimeout: 10_000,
  capacity: 0,
});

export function resolveBreaker(value: unknown): BreakerOptions | null {
  const defaults = BREAKER_DEFAULTS;
  if (value === false) return null;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('breaker', 'an object of breaker options or false', value);
  checkKeys('breaker', value, ['errorThresholdPercentage', 'volumeThreshold', 'resetTimeout', 'probeTimeout', 'rollingCountTimeout', 'capacity']);
  const whole = (n: number): boolean => Number.isInteger(n) && n >= 0;
  return {
    errorThresholdPercentage: positive('breaker.errorThresholdPercentage', value.errorThresholdPercentage, defaults.errorThresholdPercentage, 'a percentage from 1 to 100', (n) => n >= 1 && n <= 100),
    volumeThreshold: positive('breaker.volumeThreshold', value.volumeThreshold, defaults.volumeThreshold, 'a whole number of attempts (0 or more)', whole),
    resetTimeout: positive('breaker.resetTimeout', value.resetTimeout, defaults.resetTimeout, 'a number of milliseconds from 1 to 3600000', (n) => n >= 1 && n <= 3_600_000),
    probeTimeout: positive('breaker.probeTimeout', value.probeTimeout, defaults.probeTimeout, 'a number of milliseconds from 1 to 3600000', (n) => n >= 1 && n <= 3_600_000),
    rollingCountTimeout: positive('breaker.rollingCountTimeout', value.rollingCountTimeout, defaults.rollingCountTimeout, 'a number of milliseconds from 100 to 3600000', (n) => n >= 100 && n <= 3_600_000),
    capacity: positive('breaker.capacity', value.capacity, defaults.capacity, 'a whole number of attempts in flight (0 for no limit)', whole),
  };
}
