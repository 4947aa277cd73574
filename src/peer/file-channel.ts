// A file sent to the device over a data channel "file": a JSON header {"name","size"}, the bytes in
// binary messages, then "end"; the device answers "ok:BYTES" once the file is on disk, or
// "error:TEXT". The file lands in the directory the device chose (--files), under its base name
// made safe; an existing file is never overwritten (a suffix is added).
import { createWriteStream, existsSync, renameSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { RTCDataChannel } from 'werift';

/** The largest file taken (the header's size and the bytes that arrive). */
export const MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024;

/** A name with no directory part, no leading dot, only ordinary characters; "file" when nothing is left. */
export function safeFileName(name: string): string {
  const base = basename(name.replace(/\\/g, '/')).replace(/[^A-Za-z0-9._ -]/g, '_').replace(/^[.\s]+/, '').slice(0, 200);
  return base === '' ? 'file' : base;
}

/** A path in `dir` for `name` that does not exist yet: name, name-1, name-2, ... */
function freePath(dir: string, name: string): string {
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  for (let i = 0; ; i++) {
    const p = join(dir, i === 0 ? name : `${stem}-${i}${ext}`);
    if (!existsSync(p)) return p;
  }
}

export function receiveFile(dc: RTCDataChannel, dir: string | undefined, log: (line: string) => void): void {
  const refuse = (why: string): void => {
    if (dc.readyState === 'open') dc.send(`error:${why}`);
    dc.close();
  };
  if (dir === undefined) {
    dc.onmessage = () => refuse('this device takes no files (edgeward peer device --files DIR)');
    return;
  }
  let target = '';
  let part = '';
  let out: ReturnType<typeof createWriteStream> | null = null;
  let got = 0;
  let size = 0;
  const abort = (why: string): void => {
    out?.destroy();
    if (part) rmSync(part, { force: true });
    log(`file ${target ? basename(target) : ''} refused: ${why}`);
    refuse(why);
  };
  dc.onmessage = ({ data }) => {
    if (!out) {
      let header: { name?: unknown; size?: unknown };
      try {
        header = JSON.parse(typeof data === 'string' ? data : data.toString('utf8')) as typeof header;
      } catch {
        return abort('the first message must be {"name","size"}');
      }
      if (typeof header.name !== 'string' || typeof header.size !== 'number' || !Number.isInteger(header.size) || header.size < 0) return abort('the first message must be {"name","size"}');
      if (header.size > MAX_FILE_BYTES) return abort(`files of at most ${MAX_FILE_BYTES} bytes`);
      size = header.size;
      target = freePath(dir, safeFileName(header.name));
      part = `${target}.part`;
      out = createWriteStream(part, { flags: 'wx' });
      out.on('error', (e) => abort(e.message));
      return;
    }
    if (typeof data === 'string') {
      if (data !== 'end') return;
      if (got !== size) return abort(`${got} bytes arrived, the header said ${size}`);
      const done = out;
      done.end(() => {
        renameSync(part, target);
        log(`file ${basename(target)}: ${got} bytes saved in ${dir}`);
        if (dc.readyState === 'open') dc.send(`ok:${got}`);
      });
      return;
    }
    got += data.length;
    if (got > size) return abort(`more bytes than the header's ${size}`);
    out.write(data);
  };
  dc.onclose = () => {
    if (out && !out.writableEnded) abort('the channel closed before "end"');
  };
}
