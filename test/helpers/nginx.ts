// nginx as a real server in the tests: a config for one worker that keeps every file it writes
// (pid, logs, temp paths) in the test's own directory, started in the foreground; and curl as its
// client from a namespace.
import type { Lab, Netns } from './netns.js';

/** nginx.conf for `nginx -c FILE -p dir -g 'daemon off;'`: one worker, `connections` at most, the given server blocks. */
export function nginxConfig(dir: string, opts: { connections: number; servers: string }): string {
  return `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections ${opts.connections}; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${opts.servers}
}
`;
}

/** argv that runs nginx with that config in the foreground. */
export function nginxArgv(conf: string, dir: string): string[] {
  return ['nginx', '-c', conf, '-p', dir, '-e', `${dir}/error.log`, '-g', 'daemon off;'];
}

/** GETs `count` times from `ns` with curl (4 at a time, 3 s each at most): how many got 200, and the `header` of each (when asked). */
export async function curlGets(lab: Lab, ns: Netns, url: string, count: number, header?: string): Promise<{ ok: number; seen: string[] }> {
  const urls = Array.from({ length: count }, (_, i) => `${url}?n=${i}`);
  const format = header ? `%{http_code}|%header{${header}}\n` : '%{http_code}|\n';
  const r = await lab.exec(ns, ['curl', '-s', '--parallel', '--parallel-max', '4', '--max-time', '3', '-w', format, ...urls.flatMap((u) => ['-o', '/dev/null', u])], { timeoutMs: 90_000, allowFailure: true });
  let ok = 0;
  const seen: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const [code, value] = line.split('|');
    if (code !== '200') continue;
    ok++;
    seen.push(value ?? '');
  }
  return { ok, seen };
}
