// The options of a group of hosts: how a host is picked (`balance`), set
// aside (`outlierDetection`, `healthCheck`) and brought back (`slowStart`);
// their defaults and their checks.

import { checkKeys, duration, fail, isPlainObject, positive } from '../option-checks.js';
import type { Balance } from './balancer.js';
import type { HealthCheckOptions } from './health-check.js';
import type { OutlierOptions } from './outlier.js';

export const GROUP_DEFAULTS = Object.freeze({
  balance: 'peak-ewma',
  outlierDetection: Object.freeze({ consecutiveFailures: 5, baseEjectionTime: 30_000, maxEjectionTime: 300_000, maxEjectionPercent: 50 }),
  healthCheck: Object.freeze({ path: '/healthz', interval: 10_000, timeout: 2_000, healthyThreshold: 2, unhealthyThreshold: 2 }),
  slowStart: 10_000,
});

const BALANCES: readonly Balance[] = ['least-request', 'round-robin', 'peak-ewma'];

export function resolveOutlier(value: unknown): OutlierOptions | null {
  const defaults = GROUP_DEFAULTS.outlierDetection;
  if (value === false) return null;
  if (value === undefined) return { ...defaults };
  if (!isPlainObject(value)) fail('outlierDetection', 'an object of outlier detection options or false', value);
  checkKeys('outlierDetection', value, ['consecutiveFailures', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectionPercent']);
  const ms = (n: number): boolean => n >= 1 && n <= 86_400_000;
  const options = {
    consecutiveFailures: positive('outlierDetection.consecutiveFailures', value.consecutiveFailures, defaults.consecutiveFailures, 'a whole number from 1 to 1000', (n) => Number.isInteger(n) && n >= 1 && n <= 1000),
    baseEjectionTime: positive('outlierDetection.baseEjectionTime', value.baseEjectionTime, defaults.baseEjectionTime, 'a number of milliseconds from 1 to 86400000', ms),
    maxEjectionTime: positive('outlierDetection.maxEjectionTime', value.maxEjectionTime, defaults.maxEjectionTime, 'a number of milliseconds from 1 to 86400000', ms),
    maxEjectionPercent: positive('outlierDetection.maxEjectionPercent', value.maxEjectionPercent, defaults.maxEjectionPercent, 'a percentage from 0 to 100', (n) => n >= 0 && n <= 100),
  };
  if (options.maxEjectionTime < options.baseEjectionTime) {
    fail('outlierDetection.maxEjectionTime', `at least \`outlierDetection.baseEjectionTime\` (${options.baseEjectionTime})`, options.maxEjectionTime);
  }
  return options;
}

export function resolveHealthCheck(value: unknown): HealthCheckOptions | null {
  const defaults = GROUP_DEFAULTS.healthCheck;
  if (value === undefined || value === false) return null;
  if (value === true) return { ...defaults };
  if (!isPlainObject(value)) fail('healthCheck', 'an object of health check options, true or false', value);
  checkKeys('healthCheck', value, ['path', 'interval', 'timeout', 'healthyThreshold', 'unhealthyThreshold']);
  const path = value.path ?? defaults.path;
  if (typeof path !== 'string' || !/^\/[\x21-\x7e]*$/.test(path)) fail('healthCheck.path', 'a path starting with /', value.path);
  const whole = (n: number): boolean => Number.isInteger(n) && n >= 1 && n <= 100;
  return {
    path,
    interval: positive('healthCheck.interval', value.interval, defaults.interval, 'a number of milliseconds from 100 to 3600000', (n) => n >= 100 && n <= 3_600_000),
    timeout: positive('healthCheck.timeout', value.timeout, defaults.timeout, 'a number of milliseconds from 1 to 3600000', (n) => n >= 1 && n <= 3_600_000),
    healthyThreshold: positive('healthCheck.healthyThreshold', value.healthyThreshold, defaults.healthyThreshold, 'a whole number from 1 to 100', whole),
    unhealthyThreshold: positive('healthCheck.unhealthyThreshold', value.unhealthyThreshold, defaults.unhealthyThreshold, 'a whole number from 1 to 100', whole),
  };
}

export function resolveBalance(value: unknown): Balance {
  if (value !== undefined && !BALANCES.includes(value as Balance)) {
    fail('balance', `one of ${BALANCES.map((b) => `'${b}'`).join(', ')}`, value);
  }
  return (value as Balance | undefined) ?? GROUP_DEFAULTS.balance;
}

export function resolveSlowStart(value: unknown): number {
  return duration('slowStart', value, GROUP_DEFAULTS.slowStart);
}
