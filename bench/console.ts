// `npm run bench -- --only console`: edgeward's browser console (/console) in headless Chromium
// (Debian's, through puppeteer-core) against `edgeward start` on loopback:
//   1. cold loads of /console (a fresh browser context each, cache off): first-contentful-paint, the
//      sign-in form on screen, bytes transferred;
//   2. sign-in through the form (token typed, button clicked) until the overview has drawn the first
//      stats point of the event stream;
//   3. the page's memory over M minutes of live updates on the overview, with light traffic through
//      the SOCKS proxy all along (CDP metrics each minute, before and after a forced GC);
//   4. the connections view with N real proxied connections held (bench/hold.c): the 2 s poll, the
//      DOM rows, frame times while scrolling the table from top to bottom, the page's heap.
// No server the bench compares edgeward with (microsocks, Dante) has a UI: there is no second column.
import { existsSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import puppeteer, { type Browser, type BrowserContext, type CDPSession, type Page } from 'puppeteer-core';
import { SocksClient } from 'socks';
import { hold, startPortServer, type CTools, type LocalServer } from './c-tools.js';
import { adoptTracked, which, withTimeout, type Tracked } from './procs.js';
import { median } from './report.js';
import { startEdgeward, type Target } from './targets.js';

export interface ConsoleOptions {
  /** cold loads of /console, each followed by a sign-in */
  loads: number;
  /** minutes of live updates on the overview */
  minutes: number;
  /** proxied connections held for the connections view */
  rows: number;
  /** hold.c's client source addresses 127.0.0.1..K (loopback ports) */
  spread: number;
  log: (msg: string) => void;
}

/** Heap after the last minute at most this much above the heap after the first one. */
export const HEAP_GROWTH_GOAL = 0.2;
/** connections per second through the proxy during the soak, each a 512-byte echo */
const TRAFFIC_PER_SECOND = 4;
const TRAFFIC_BYTES = 512;
const SCROLL_STEPS = 100;
/** a long frame: three vsyncs at 60 Hz (50 ms), less a little for timer jitter */
const LONG_FRAME_MS = 49.5;
/** a virtual table holds the rows in view and a few either side, whatever N is (~30 at this viewport) */
const MAX_DOM_ROWS = 100;
/** how long the connections view is watched for its polls (it polls every 2 s) */
const POLL_WATCH_MS = 10_000;
const SERVER_FETCHES = 5;
const VIEWPORT = { width: 1280, height: 800 };

export interface ColdLoad {
  /** ms since navigation start */
  firstContentfulPaintMs: number | null;
  /** the frame after the page unhid the sign-in form (its session check said 401) */
  formVisibleMs: number | null;
  domContentLoadedMs: number;
  loadMs: number;
  /** per URL path: bytes over the wire (headers included) and the body */
  resources: Array<{ path: string; transferBytes: number; bodyBytes: number; durationMs: number }>;
  transferBytesTotal: number;
}

export interface MetricsSample {
  /** minutes since the soak began (0: right after sign-in) */
  minute: number;
  jsHeapUsed: number;
  jsHeapTotal: number;
  nodes: number;
  listeners: number;
  /** the same after HeapProfiler.collectGarbage: what the page really keeps */
  afterGc: { jsHeapUsed: number; jsHeapTotal: number; nodes: number; listeners: number };
  /** "connections since start" on the overview and the feed's state: the page is still live */
  shownTotal: string;
  feed: string;
}

export interface ConsoleResult {
  status: 'measured' | 'not built' | 'not installed' | 'error';
  reason?: string;
  chromium?: string;
  files?: { appJsBytes: number; appCssBytes: number; indexHtmlBytes: number };
  loads: ColdLoad[];
  /** ms from the click on "Sign in with the token" to the frame after the overview drew the first stats point */
  signInMs: number[];
  soak?: {
    minutes: number;
    samples: MetricsSample[];
    traffic: { perSecond: number; bytes: number; ok: number; errors: Record<string, number> };
  };
  rows?: {
    wanted: number;
    held: number;
    holdErrors: Record<string, number>;
    holdSeconds: number;
    /** the total the view's count line shows */
    shownTotal: number;
    /** from the hash change to #/connections until the count line shows them */
    viewToRowsMs: number;
    domRows: number;
    /** the page's polls of GET /api/v1/connections (resource timing: request to last byte) */
    pollMs: number[];
    pollBytes: number[];
    /** main-thread tasks over 50 ms while watching the polls */
    longTasksMs: number[];
    /** the same request from the bench (node fetch with the bearer token) */
    serverMs: number[];
    serverBytes: number;
    /** frame times while scrolling from top to bottom in SCROLL_STEPS steps */
    frameMs: number[];
    /** as many frames on the same view without scrolling, just before */
    idleFrameMs: number[];
    /** the renderer's main-thread work while scrolling, per frame (CDP Performance metrics) */
    scrollWorkPerFrameMs: { script: number; layout: number; style: number; task: number };
    /** the view's 2 s polls that fell into the scroll, and the long tasks there */
    pollsDuringScroll: number;
    longTasksDuringScrollMs: number[];
    scrollHeight: number;
    /** aria-rowindex of the last row rendered at the bottom: N + 1 when the end is reachable */
    lastRowIndex: number | null;
    heap: { jsHeapUsed: number; jsHeapTotal: number; nodes: number; listeners: number };
  };
  /** page errors, steps that failed */
  failures: string[];
}

/** What the page-side scripts keep on globalThis. */
interface PageState {
  formShown?: number;
  formPainted?: number;
  clicked?: number;
  liveShown?: number;
  livePainted?: number;
  viewOpened?: number;
  rowsShown?: number;
}

/**
 * tsx compiles this file with esbuild's keepNames, which wraps named functions in __name(...);
 * functions handed to the page keep that call, so the page gets an __name that does nothing.
 * A string: it must not go through the same transform.
 */
const NAME_SHIM = 'globalThis.__name = globalThis.__name || ((f) => f);';

/** fds kept aside from the held connections: listeners, the API's clients, the data store, workers */
const FD_RESERVE = 2000;

/** Proxied connections one edgeward can hold: two fds each within the hard RLIMIT_NOFILE (which Node raises its soft limit to). */
function mostRows(): number {
  try {
    const m = /^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m) return Math.floor((Number(m[1]) - FD_RESERVE) / 2);
  } catch {
    // no /proc: let hold.c find out
  }
  return Number.MAX_SAFE_INTEGER;
}

/** Runs the whole part; never throws: what failed is in `failures` (or `status`). */
export async function measureConsole(root: string, tmp: string, tools: () => Promise<CTools>, o: ConsoleOptions): Promise<ConsoleResult> {
  const r: ConsoleResult = { status: 'measured', loads: [], signInMs: [], failures: [] };
  const dist = join(root, 'dist', 'console');
  if (!existsSync(join(dist, 'app.js')) || !existsSync(join(root, 'dist', 'cli', 'start.js'))) {
    return { ...r, status: 'not built', reason: 'dist/console/app.js or dist/cli/start.js is missing: npm run build' };
  }
  r.files = { appJsBytes: statSync(join(dist, 'app.js')).size, appCssBytes: statSync(join(dist, 'app.css')).size, indexHtmlBytes: statSync(join(dist, 'index.html')).size };
  const most = mostRows();
  if (o.rows > most) return { ...r, status: 'error', reason: `--console-rows ${o.rows}: edgeward can hold ${most} at most here (two fds each, hard RLIMIT_NOFILE ${most * 2 + FD_RESERVE})` };
  const chromium = which('chromium');
  if (!chromium) return { ...r, status: 'not installed', reason: 'chromium is not on PATH (apt-get install chromium)' };

  let echo: LocalServer | undefined;
  let gateway: Target | undefined;
  let browser: Browser | undefined;
  let browserProc: Tracked | undefined;
  let held: Tracked | undefined;
  let traffic: SocksTraffic | undefined;
  try {
    const bins = await tools();
    echo = await startPortServer('echo-server', bins.echoServer, ['--addrs', String(o.spread)]);
    gateway = await startEdgeward(root, tmp);
    if (gateway.unavailable || !gateway.api || gateway.socksPort === undefined) throw new Error(`edgeward: ${gateway.unavailable ?? 'no API'}`);
    const api = gateway.api;
    o.log(`console: edgeward API on ${api.url}, SOCKS5 on 127.0.0.1:${gateway.socksPort} (pid ${gateway.proc?.pid})`);

    browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
      userDataDir: join(tmp, 'console-chromium'),
      defaultViewport: VIEWPORT,
      timeout: 30_000,
      protocolTimeout: 60_000,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
    const proc = browser.process();
    // puppeteer starts it as the leader of its own process group: its helpers go with it
    if (proc) browserProc = adoptTracked('chromium', proc, { group: true });
    r.chromium = await browser.version();
    o.log(`console: ${r.chromium} (pid ${proc?.pid})`);

    // 1, 2: cold loads, each followed by a sign-in; the last page stays for the rest
    let page: Page | undefined;
    let context: BrowserContext | undefined;
    for (let i = 0; i < o.loads; i++) {
      context = await browser.createBrowserContext();
      page = await context.newPage();
      page.on('pageerror', (e) => r.failures.push(`page error: ${(e as Error).message ?? String(e)}`));
      const load = await coldLoad(page, `${api.url}/console`);
      r.loads.push(load);
      const ms = await signInToLive(page, api.token);
      r.signInMs.push(ms);
      o.log(`console: cold load ${i + 1}/${o.loads}: first-contentful-paint ${fmtMs(load.firstContentfulPaintMs)}, form ${fmtMs(load.formVisibleMs)}, ${load.transferBytesTotal} bytes; sign-in -> live ${ms.toFixed(0)} ms`);
      if (i < o.loads - 1) await context.close();
    }
    if (!page) throw new Error('no page');
    const cdp = await page.createCDPSession();

    // 3: memory over M minutes of live updates, with light traffic through the proxy
    traffic = new SocksTraffic(gateway.socksPort, echo.port);
    const samples: MetricsSample[] = [await metricsSample(page, cdp, 0)];
    const t0 = Date.now();
    for (let m = 1; m <= o.minutes; m++) {
      await sleep(t0 + m * 60_000 - Date.now());
      if (gateway.proc?.status()) throw new Error(`edgeward exited during the soak: ${gateway.proc.stderr().trim().slice(-300)}`);
      const s = await metricsSample(page, cdp, m);
      samples.push(s);
      o.log(`console: minute ${m}/${o.minutes}: JS heap ${mib(s.jsHeapUsed)} MiB (${mib(s.afterGc.jsHeapUsed)} after GC), ${s.afterGc.nodes} nodes, ${s.afterGc.listeners} listeners; overview total ${s.shownTotal}, feed ${s.feed}; traffic ${traffic.ok} ok, errors ${JSON.stringify(traffic.errors)}`);
    }
    await traffic.stop();
    r.soak = { minutes: o.minutes, samples, traffic: { perSecond: TRAFFIC_PER_SECOND, bytes: TRAFFIC_BYTES, ok: traffic.ok, errors: traffic.errors } };
    const last = samples[samples.length - 1]!;
    if (o.minutes > 0 && last.shownTotal === samples[Math.max(0, samples.length - 2)]!.shownTotal) r.failures.push(`the overview's total did not change over the last minute (${last.shownTotal}): the stream stopped?`);
    if (last.feed !== 'live') r.failures.push(`the feed says "${last.feed}" after the soak, not "live"`);

    // 4: the connections view with N real rows
    const holdStart = Date.now();
    const h = await hold(bins.hold, echo.port, gateway.socksPort, o.rows, o.spread);
    held = h.proc;
    const holdSeconds = (Date.now() - holdStart) / 1000;
    o.log(`console: holding ${h.held}/${o.rows} proxied connections (${holdSeconds.toFixed(1)} s), errors ${JSON.stringify(h.errors)}`);
    r.rows = { wanted: o.rows, held: h.held, holdErrors: h.errors, holdSeconds, ...(await connectionsView(page, cdp, api, h.held)) };
    const v = r.rows;
    const f = frameStats(v.frameMs);
    o.log(`console: connections view: ${v.shownTotal} shown after ${v.viewToRowsMs.toFixed(0)} ms, ${v.domRows} DOM rows, poll ${fmtMs(median(v.pollMs) ?? null)} (server ${fmtMs(median(v.serverMs) ?? null)}, ${v.serverBytes} bytes), scroll frames p50 ${f.p50.toFixed(1)} / p95 ${f.p95.toFixed(1)} / max ${f.max.toFixed(1)} ms, ${f.over50} of 50 ms or more; last row ${v.lastRowIndex}`);
    if (v.lastRowIndex !== h.held + 1) r.failures.push(`scrolled to the bottom, the last row rendered is row ${v.lastRowIndex}, not ${h.held + 1}`);
  } catch (e) {
    r.status = 'error';
    r.reason = e instanceof Error ? e.message : String(e);
    o.log(`console: ${r.reason}`);
  } finally {
    await traffic?.stop();
    if (browser) await withTimeout(browser.close().catch(() => undefined), 10_000);
    await browserProc?.stop(2000);
    await held?.stop(2000);
    await gateway?.stop();
    await echo?.proc.stop(2000);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// the page

async function coldLoad(page: Page, url: string): Promise<ColdLoad> {
  await page.setCacheEnabled(false);
  await page.evaluateOnNewDocument(NAME_SHIM);
  await page.evaluateOnNewDocument(() => {
    const st: PageState = {};
    (globalThis as unknown as { __ewBench: PageState }).__ewBench = st;
    // the form is in the HTML, hidden, until the page's session check comes back 401
    const watch = new MutationObserver(() => {
      const form = document.getElementById('signin');
      if (!form || form.hidden || st.formShown !== undefined) return;
      st.formShown = performance.now();
      watch.disconnect();
      requestAnimationFrame(() => (st.formPainted = performance.now()));
    });
    watch.observe(document, { subtree: true, attributes: true, attributeFilter: ['hidden'] });
  });
  await page.goto(url, { waitUntil: 'load', timeout: 30_000 });
  await page.waitForFunction(() => (globalThis as unknown as { __ewBench: PageState }).__ewBench.formPainted !== undefined, { timeout: 15_000 });
  // paint entries can come a moment after load
  await page.waitForFunction(() => performance.getEntriesByName('first-contentful-paint').length > 0, { timeout: 5_000 }).catch(() => undefined);
  return page.evaluate(() => {
    const st = (globalThis as unknown as { __ewBench: PageState }).__ewBench;
    const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    const entries = [nav, ...(performance.getEntriesByType('resource') as PerformanceResourceTiming[])];
    const resources = entries.map((e) => ({ path: new URL(e.name).pathname, transferBytes: e.transferSize, bodyBytes: e.encodedBodySize, durationMs: e.duration }));
    return {
      firstContentfulPaintMs: fcp ? fcp.startTime : null,
      formVisibleMs: st.formPainted ?? null,
      domContentLoadedMs: nav.domContentLoadedEventEnd,
      loadMs: nav.loadEventEnd,
      resources,
      transferBytesTotal: resources.reduce((a, x) => a + x.transferBytes, 0),
    };
  });
}

/** Types the token, clicks sign-in; ms from the click to the frame after all three charts drew a point. */
async function signInToLive(page: Page, token: string): Promise<number> {
  await page.type('#signin-token', token);
  await page.evaluate(() => {
    const st = (globalThis as unknown as { __ewBench: PageState }).__ewBench;
    st.clicked = st.liveShown = st.livePainted = undefined;
    document.getElementById('signin-token-submit')!.addEventListener('click', () => (st.clicked = performance.now()), { once: true, capture: true });
    const overview = document.getElementById('view-overview')!;
    // live: the overview shows, its "active connections" figure has a value from the stream, and
    // each chart has its uPlot canvas and says what its latest point is
    const isLive = (): boolean => {
      if (overview.hidden || document.getElementById('figure-active')?.textContent === '-') return false;
      const charts = [...overview.querySelectorAll('figure.chart')];
      return charts.length > 0 && charts.every((c) => c.querySelector('.chart-plot canvas') !== null && (c.querySelector('.chart-summary')?.textContent ?? '').startsWith('now:'));
    };
    const watch = new MutationObserver(() => {
      if (st.clicked === undefined || st.liveShown !== undefined || !isLive()) return;
      st.liveShown = performance.now();
      watch.disconnect();
      requestAnimationFrame(() => (st.livePainted = performance.now()));
    });
    watch.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
  await page.click('#signin-token-submit');
  await page.waitForFunction(() => (globalThis as unknown as { __ewBench: PageState }).__ewBench.livePainted !== undefined, { timeout: 15_000 });
  return page.evaluate(() => {
    const st = (globalThis as unknown as { __ewBench: PageState }).__ewBench;
    return st.livePainted! - st.clicked!;
  });
}

async function metricsNow(page: Page): Promise<{ jsHeapUsed: number; jsHeapTotal: number; nodes: number; listeners: number }> {
  const m = await page.metrics();
  return { jsHeapUsed: m.JSHeapUsedSize ?? 0, jsHeapTotal: m.JSHeapTotalSize ?? 0, nodes: m.Nodes ?? 0, listeners: m.JSEventListeners ?? 0 };
}

async function metricsSample(page: Page, cdp: CDPSession, minute: number): Promise<MetricsSample> {
  const raw = await metricsNow(page);
  await cdp.send('HeapProfiler.collectGarbage');
  const afterGc = await metricsNow(page);
  const shown = await page.evaluate(() => ({ total: document.getElementById('figure-total')?.textContent ?? '', feed: document.getElementById('feed-state')?.textContent ?? '' }));
  return { minute, ...raw, afterGc, shownTotal: shown.total, feed: shown.feed };
}

type RowsFigures = Omit<NonNullable<ConsoleResult['rows']>, 'wanted' | 'held' | 'holdErrors' | 'holdSeconds'>;

async function connectionsView(page: Page, cdp: CDPSession, api: { url: string; token: string }, count: number): Promise<RowsFigures> {
  // watch the view's polls and the main thread from before it opens
  await page.evaluate(() => {
    const w = globalThis as unknown as { __ewBench: PageState; __ewPolls: Array<{ ms: number; bytes: number }>; __ewLong: number[] };
    w.__ewPolls = [];
    w.__ewLong = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries() as PerformanceResourceTiming[]) if (e.name.includes('/api/v1/connections')) w.__ewPolls.push({ ms: e.duration, bytes: e.encodedBodySize });
    }).observe({ type: 'resource' });
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__ewLong.push(e.duration);
    }).observe({ type: 'longtask' });
    w.__ewBench.viewOpened = performance.now();
    location.hash = '#/connections';
  });
  await page.waitForFunction(
    (n: number) => {
      const m = /^(\d+) connection/.exec(document.getElementById('connections-count')?.textContent ?? '');
      if (!m || Number(m[1]) < n) return false;
      const st = (globalThis as unknown as { __ewBench: PageState }).__ewBench;
      st.rowsShown ??= performance.now();
      return true;
    },
    { timeout: 60_000, polling: 'mutation' },
    count,
  );
  await sleep(POLL_WATCH_MS);
  const seen = await page.evaluate(() => {
    const w = globalThis as unknown as { __ewBench: PageState; __ewPolls: Array<{ ms: number; bytes: number }>; __ewLong: number[] };
    return {
      shownTotal: Number(/^(\d+)/.exec(document.getElementById('connections-count')?.textContent ?? '')?.[1] ?? 0),
      viewToRowsMs: w.__ewBench.rowsShown! - w.__ewBench.viewOpened!,
      domRows: document.querySelectorAll('#view-connections tr.vt-row').length,
      polls: w.__ewPolls,
      longTasksMs: w.__ewLong,
    };
  });
  const serverMs: number[] = [];
  let serverBytes = 0;
  for (let i = 0; i < SERVER_FETCHES; i++) {
    const t0 = performance.now();
    const res = await fetch(`${api.url}/api/v1/connections?limit=10000`, { headers: { authorization: `Bearer ${api.token}` }, signal: AbortSignal.timeout(30_000) });
    const body = await res.arrayBuffer();
    serverMs.push(performance.now() - t0);
    if (!res.ok) throw new Error(`GET /api/v1/connections: ${res.status}`);
    serverBytes = body.byteLength;
  }
  // the same number of frames without scrolling first: what this machine's frames cost anyway
  const idle = await frames(page, SCROLL_STEPS, false);
  const work0 = await page.metrics();
  const scroll = await frames(page, SCROLL_STEPS, true);
  const work1 = await page.metrics();
  const perFrame = (k: 'ScriptDuration' | 'LayoutDuration' | 'RecalcStyleDuration' | 'TaskDuration'): number => (((work1[k] ?? 0) - (work0[k] ?? 0)) * 1000) / Math.max(1, scroll.frameMs.length);
  await cdp.send('HeapProfiler.collectGarbage');
  const heap = await metricsNow(page);
  return {
    shownTotal: seen.shownTotal,
    viewToRowsMs: seen.viewToRowsMs,
    domRows: seen.domRows,
    pollMs: seen.polls.map((p) => p.ms),
    pollBytes: seen.polls.map((p) => p.bytes),
    longTasksMs: seen.longTasksMs,
    serverMs,
    serverBytes,
    frameMs: scroll.frameMs,
    idleFrameMs: idle.frameMs,
    scrollWorkPerFrameMs: { script: perFrame('ScriptDuration'), layout: perFrame('LayoutDuration'), style: perFrame('RecalcStyleDuration'), task: perFrame('TaskDuration') },
    pollsDuringScroll: scroll.polls,
    longTasksDuringScrollMs: scroll.longTasksMs,
    scrollHeight: scroll.scrollHeight,
    lastRowIndex: scroll.lastRowIndex,
    heap,
  };
}

/**
 * `steps` animation frames on the connections view; with `scroll`, each frame moves the table's
 * scroll container 1/steps further from the top to the bottom. Frame time = the gap between two
 * frames' callbacks. Also the view's polls and long tasks that fell into those frames.
 */
async function frames(page: Page, steps: number, scroll: boolean): Promise<{ frameMs: number[]; scrollHeight: number; lastRowIndex: number | null; polls: number; longTasksMs: number[] }> {
  return page.evaluate(
    (n: number, move: boolean) =>
      new Promise<{ frameMs: number[]; scrollHeight: number; lastRowIndex: number | null; polls: number; longTasksMs: number[] }>((resolve) => {
        const w = globalThis as unknown as { __ewPolls: unknown[]; __ewLong: number[] };
        const polls0 = w.__ewPolls.length;
        const long0 = w.__ewLong.length;
        const box = document.querySelector<HTMLElement>('#view-connections .vt')!;
        box.scrollTop = 0;
        const max = box.scrollHeight - box.clientHeight;
        const frameMs: number[] = [];
        let prev = 0;
        let i = -2; // two frames to settle at the top first
        const step = (now: number): void => {
          if (i > 0) frameMs.push(now - prev);
          prev = now;
          if (i === n) {
            requestAnimationFrame(() => {
              const rows = box.querySelectorAll('tr.vt-row');
              const last = rows[rows.length - 1]?.getAttribute('aria-rowindex');
              resolve({ frameMs, scrollHeight: box.scrollHeight, lastRowIndex: last ? Number(last) : null, polls: w.__ewPolls.length - polls0, longTasksMs: w.__ewLong.slice(long0) });
            });
            return;
          }
          i++;
          if (move && i > 0) box.scrollTop = Math.round((max * i) / n);
          requestAnimationFrame(step);
        };
        requestAnimationFrame(step);
      }),
    steps,
    scroll,
  );
}

// ---------------------------------------------------------------------------------------------
// light traffic through the proxy

/** A few short connections per second through the SOCKS proxy to the echo server, each echoing TRAFFIC_BYTES. */
class SocksTraffic {
  ok = 0;
  readonly errors: Record<string, number> = {};
  private inFlight = 0;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;
  private readonly payload = Buffer.alloc(TRAFFIC_BYTES, 0x61);

  constructor(
    private readonly socksPort: number,
    private readonly echoPort: number,
  ) {
    this.timer = setInterval(() => void this.once(), 1000 / TRAFFIC_PER_SECOND);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    const deadline = Date.now() + 6000;
    while (this.inFlight > 0 && Date.now() < deadline) await sleep(50);
  }

  private async once(): Promise<void> {
    if (this.inFlight >= 16) return void this.count('backlog (16 in flight)');
    this.inFlight++;
    let socket: net.Socket | undefined;
    try {
      ({ socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: this.socksPort, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port: this.echoPort }, timeout: 5000 }));
      await echoOnce(socket, this.payload);
      this.ok++;
    } catch (e) {
      this.count((e as Error).message.slice(0, 80));
    } finally {
      socket?.destroy();
      this.inFlight--;
    }
  }

  private count(kind: string): void {
    this.errors[kind] = (this.errors[kind] ?? 0) + 1;
  }
}

function echoOnce(socket: net.Socket, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const timer = setTimeout(() => reject(new Error('echo timeout')), 5000);
    socket.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= payload.length) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.write(payload);
  });
}

// ---------------------------------------------------------------------------------------------
// the report

/**
 * p50/p95/max of frame times, and the long frames: 50 ms or more. Frame times come in whole
 * vsyncs (16.7 ms at 60 Hz) give or take a fraction of a millisecond, so a frame that missed two
 * vsyncs reads 49.9 or 50.1: both count.
 */
export function frameStats(ms: readonly number[]): { p50: number; p95: number; max: number; over50: number } {
  if (ms.length === 0) return { p50: NaN, p95: NaN, max: NaN, over50: 0 };
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number): number => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
  return { p50: at(50), p95: at(95), max: s[s.length - 1]!, over50: s.filter((x) => x >= LONG_FRAME_MS).length };
}

/** The part's table: metric, edgeward's figure, target, result (PASS/MISS only where there is a target). */
export function formatConsole(r: ConsoleResult): string {
  const rows: Array<[string, string, string, string]> = [];
  const n = r.loads.length;
  const med = (xs: Array<number | null>): number | undefined => median(xs.filter((x): x is number => x !== null));
  const range = (xs: Array<number | null>): string => {
    const v = xs.filter((x): x is number => x !== null);
    return v.length > 1 ? ` (${Math.min(...v).toFixed(0)}-${Math.max(...v).toFixed(0)})` : '';
  };
  if (n > 0) {
    const fcp = r.loads.map((l) => l.firstContentfulPaintMs);
    const form = r.loads.map((l) => l.formVisibleMs);
    rows.push([`/console cold: first-contentful-paint (ms, median of ${n})`, `${fmtNum(med(fcp), 0)}${range(fcp)}`, '-', '-']);
    rows.push([`/console cold: sign-in form visible (ms)`, `${fmtNum(med(form), 0)}${range(form)}`, '-', '-']);
    const bytes = (p: string): number | undefined => median(r.loads.map((l) => l.resources.find((x) => x.path === p)?.transferBytes ?? 0));
    rows.push([`  transferred per cold load (KiB): total`, fmtNum(kib(median(r.loads.map((l) => l.transferBytesTotal))), 1), '-', '-']);
    rows.push([`  page / app.js / app.css (KiB, no compression)`, [bytes('/console'), bytes('/console/app.js'), bytes('/console/app.css')].map((b) => fmtNum(kib(b), 1)).join(' / '), '-', '-']);
  }
  if (r.signInMs.length > 0) rows.push([`sign-in click -> first stats point drawn (ms, median of ${r.signInMs.length})`, `${fmtNum(median(r.signInMs), 0)}${range(r.signInMs)}`, '-', '-']);
  const soak = r.soak;
  if (soak && soak.samples.length >= 2) {
    // against the first minute (the page settled); a 1-minute soak has only the sample at sign-in before it
    const first = soak.samples.length > 2 ? soak.samples.find((s) => s.minute === 1)! : soak.samples[0]!;
    const last = soak.samples[soak.samples.length - 1]!;
    const growth = first.afterGc.jsHeapUsed > 0 ? last.afterGc.jsHeapUsed / first.afterGc.jsHeapUsed - 1 : NaN;
    const span = `${first.minute} -> ${last.minute} min`;
    rows.push([
      `page JS heap after GC, ${span} (MiB)`,
      `${mib(first.afterGc.jsHeapUsed)} -> ${mib(last.afterGc.jsHeapUsed)} (${pct(growth)})`,
      `within ${(HEAP_GROWTH_GOAL * 100).toFixed(0)} %`,
      Number.isNaN(growth) ? 'n/a' : growth <= HEAP_GROWTH_GOAL ? 'PASS' : 'MISS',
    ]);
    rows.push([`  JS heap used / total without GC, ${span} (MiB)`, `${mib(first.jsHeapUsed)} / ${mib(first.jsHeapTotal)} -> ${mib(last.jsHeapUsed)} / ${mib(last.jsHeapTotal)}`, '-', '-']);
    rows.push([`  DOM nodes, ${span}`, `${first.afterGc.nodes} -> ${last.afterGc.nodes}`, '-', '-']);
    rows.push([`  JS event listeners, ${span}`, `${first.afterGc.listeners} -> ${last.afterGc.listeners}`, '-', '-']);
    const errs = Object.values(soak.traffic.errors).reduce((a, b) => a + b, 0);
    rows.push([`  SOCKS traffic meanwhile (${soak.traffic.perSecond}/s, ${soak.traffic.bytes}-byte echoes)`, `${soak.traffic.ok} ok, ${errs} failed`, '-', '-']);
  }
  const v = r.rows;
  if (v) {
    const f = frameStats(v.frameMs);
    rows.push([`connections view: rows in the table (of ${v.wanted} wanted, ${v.held} held)`, String(v.shownTotal), `${v.held}`, v.shownTotal >= v.held && v.held === v.wanted ? 'PASS' : 'MISS']);
    rows.push([`  from opening the view to them all listed (ms)`, v.viewToRowsMs.toFixed(0), '-', '-']);
    rows.push([`  row elements in the DOM`, String(v.domRows), `<= ${MAX_DOM_ROWS} (virtual)`, v.domRows <= MAX_DOM_ROWS ? 'PASS' : 'MISS']);
    rows.push([`  GET /api/v1/connections, the page's poll (ms, median of ${v.pollMs.length})`, `${fmtNum(median(v.pollMs), 0)}${range(v.pollMs)}`, '-', '-']);
    rows.push([`  the same from the bench (ms, median of ${v.serverMs.length}; KiB)`, `${fmtNum(median(v.serverMs), 0)}${range(v.serverMs)}; ${fmtNum(kib(v.serverBytes), 0)}`, '-', '-']);
    rows.push([`  main-thread tasks > 50 ms in ${POLL_WATCH_MS / 1000} s of polls (count, longest ms)`, v.longTasksMs.length === 0 ? '0' : `${v.longTasksMs.length}, ${Math.max(...v.longTasksMs).toFixed(0)}`, '-', '-']);
    rows.push([`  scrolling top -> bottom, ${v.frameMs.length} frames: p50 / p95 / max (ms)`, `${f.p50.toFixed(1)} / ${f.p95.toFixed(1)} / ${f.max.toFixed(1)}`, '-', '-']);
    rows.push([`  frames of 50 ms or more while scrolling (polls meanwhile)`, `${f.over50} (${v.pollsDuringScroll})`, '-', '-']);
    const fi = frameStats(v.idleFrameMs);
    rows.push([`  the same frames without scrolling: p50 / p95 / max (ms)`, `${fi.p50.toFixed(1)} / ${fi.p95.toFixed(1)} / ${fi.max.toFixed(1)}`, '-', '-']);
    const wk = v.scrollWorkPerFrameMs;
    rows.push([`  main thread per scrolled frame: script / style / layout / all (ms)`, `${wk.script.toFixed(1)} / ${wk.style.toFixed(1)} / ${wk.layout.toFixed(1)} / ${wk.task.toFixed(1)}`, '-', '-']);
    rows.push([`  page JS heap after GC with ${v.held} rows (MiB)`, mib(v.heap.jsHeapUsed), '-', '-']);
  }
  if (r.status !== 'measured') rows.push(['console', `${r.status}: ${r.reason ?? ''}`, '-', 'n/a']);
  const header: [string, string, string, string] = ['metric', 'edgeward', 'target', 'result'];
  const all = [header, ...rows];
  const w = header.map((_, i) => Math.max(...all.map((x) => x[i]!.length)));
  return all.map((cols) => cols.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('   ').trimEnd()).join('\n');
}

/** The notes lines for run.ts. */
export function consoleNotes(r: ConsoleResult, o: Pick<ConsoleOptions, 'loads' | 'minutes' | 'rows'>): string[] {
  const notes = [
    `console: headless ${r.chromium ?? 'Chromium'} (puppeteer-core, viewport ${VIEWPORT.width}x${VIEWPORT.height}) against edgeward on loopback; ${o.loads} cold loads, each in a fresh browser context with the cache off, signed in through the form; the memory soak keeps the overview open ${o.minutes} min with ${TRAFFIC_PER_SECOND} SOCKS connections/s (${TRAFFIC_BYTES}-byte echoes), page.metrics() each minute before and after HeapProfiler.collectGarbage; the connections view with ${o.rows} connections held by hold.c, scrolled in ${SCROLL_STEPS} steps, one per animation frame (each step jumps ~1 % of the table)`,
    'console: none of the peers (microsocks, Dante) has a UI, so there is no column to compare with',
  ];
  for (const f of r.failures.slice(0, 5)) notes.push(`console: ${f}`);
  if (r.failures.length > 5) notes.push(`console: ${r.failures.length - 5} more problems in the JSON`);
  return notes;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

function mib(b: number): string {
  return (b / 1048576).toFixed(2);
}

function kib(b: number | undefined): number | undefined {
  return b === undefined ? undefined : b / 1024;
}

function pct(x: number): string {
  return Number.isNaN(x) ? '?' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
}

function fmtNum(x: number | undefined, digits: number): string {
  return x === undefined ? '-' : x.toFixed(digits);
}

function fmtMs(x: number | null): string {
  return x === null ? '?' : `${x.toFixed(0)} ms`;
}
