// nginx as a real server in the tests: a config for one worker that keeps every file it writes
// (pid, logs, temp paths) in the test's own directory, started in the foreground.

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
