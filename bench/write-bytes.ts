// Writes `total` bytes of a repeated chunk to a writable, honouring
// backpressure, then ends it: the bench's uploads and downloads of any size
// without holding them in memory.

import type { Writable } from 'node:stream';

const CHUNK = Buffer.alloc(64 * 1024, 'b');

export function writeBytes(stream: Writable, total: number): void {
  let sent = 0;
  const pump = (): void => {
    while (sent < total) {
      const piece = CHUNK.subarray(0, Math.min(CHUNK.length, total - sent));
      sent += piece.length;
      if (!stream.write(piece)) {
        stream.once('drain', pump);
        return;
      }
    }
    stream.end();
  };
  pump();
}
