// nginx as a contender, configured as a user would: an upstream block of the
// replicas with keep-alive, in a folder of its own, started in the
// foreground. Shared by bench/faults.ts and bench/tail.ts.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** nginx's version, or `null` when it is not installed. */
export function nginxVersion(): string | null {
  const probe = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  // `nginx -v` prints to stderr.
  if (probe.error !== undefined || probe.status !== 0) return null;
  return /nginx\/(\S+)/.exec(`${probe.stderr}${probe.stdout}`)?.[1] ?? 'unknown';
}

/**
 * Writes `dir/nginx.conf` (listening on `port`, proxying to the replicas) and
 * starts nginx on it. `location` adds directives to `location /`; `keepalive`
 * is the upstream block's idle connections per worker (32).
 */
export function startNginxIn(dir: string, port: number, replicaPorts: readonly number[], location: readonly string[] = [], keepalive = 32): ChildProcess {
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;
pid ${dir}/nginx.pid;
# crit: no log line per failed connect, so that logging is not measured (resilient-proxy logs nothing by default).
error_log ${dir}/error.log crit;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream replicas {
${replicaPorts.map((p) => `    server 127.0.0.1:${p};`).join('\n')}
    keepalive ${keepalive};
    keepalive_requests 1000000;
  }
  # Connections kept for good, as the Node contenders keep them (nginx closes one after 1000 requests by default).
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
${location.map((line) => `      ${line}\n`).join('')}    }
  }
}
`,
  );
  return spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
}
