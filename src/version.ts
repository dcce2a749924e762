/** The package's version, for the OpenTelemetry instrumentation scope (a test keeps it equal to package.json's). */
export const VERSION = '0.1.0';
