// A server-sent event stream the whole app shares: one EventSource per URL, opened at sign-in (or on
// first need) and closed at sign-out, whichever views come and go. Views subscribe to its events by
// name; the JSON of each event is parsed once. The browser reconnects a dropped stream by itself;
// a stream the server refused (401, 404, 503) is closed for good, and `onClosed` decides what next.

export type FeedState = 'closed' | 'connecting' | 'open';

type Handler = (data: unknown) => void;

export class EventFeed {
  private source: EventSource | null = null;
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly stateListeners = new Set<(s: FeedState) => void>();
  private retryTimer: number | undefined;

  constructor(
    readonly url: string,
    /** called when the server ended the stream for good (not a network drop the browser retries) */
    private readonly onClosed: (feed: EventFeed) => void = () => undefined,
  ) {}

  get state(): FeedState {
    if (!this.source) return 'closed';
    return this.source.readyState === EventSource.OPEN ? 'open' : 'connecting';
  }

  /** Calls `fn` with each `event`'s parsed data; returns the function that unsubscribes. */
  on<T>(event: string, fn: (data: T) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) {
      set = new Set();
      this.handlers.set(event, set);
      this.source?.addEventListener(event, this.dispatch);
    }
    set.add(fn as Handler);
    return () => set.delete(fn as Handler);
  }

  /** Calls `fn` on every change of state (open, reconnecting, closed). */
  onState(fn: (s: FeedState) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  /** Opens the stream unless it is open or opening. */
  open(): void {
    window.clearTimeout(this.retryTimer);
    if (this.source) return;
    const source = new EventSource(this.url);
    this.source = source;
    for (const event of this.handlers.keys()) source.addEventListener(event, this.dispatch);
    source.onopen = () => this.emitState();
    source.onerror = () => {
      if (this.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.emitState();
        this.onClosed(this);
      } else {
        this.emitState();
      }
    };
    this.emitState();
  }

  /** Opens it again after `ms` (after a refusal the caller judged passing). */
  reopenAfter(ms: number): void {
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.open(), ms);
  }

  close(): void {
    window.clearTimeout(this.retryTimer);
    if (!this.source) return;
    this.source.close();
    this.source = null;
    this.emitState();
  }

  private readonly dispatch = (ev: Event): void => {
    const set = this.handlers.get(ev.type);
    if (!set || set.size === 0) return;
    let data: unknown;
    try {
      data = JSON.parse((ev as MessageEvent<string>).data);
    } catch {
      return; // not JSON: nothing a view could use
    }
    for (const fn of set) fn(data);
  };

  private emitState(): void {
    const s = this.state;
    for (const fn of this.stateListeners) fn(s);
  }
}
