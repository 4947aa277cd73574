// What every view of the console is to the router: a section it shows and hides, and the shared
// streams it may subscribe to.
import type { EventFeed } from './sse.js';

export interface View {
  /** the route: #/ID */
  readonly id: string;
  /** the navigation label and the page title */
  readonly title: string;
  readonly element: HTMLElement;
  /** the view became visible: fetch, start polling */
  show(): void;
  /** the view was left: stop polling (stream subscriptions that feed charts may stay) */
  hide(): void;
  /** signed out: forget what was shown (tokens, lists) */
  reset?(): void;
}

export interface AppContext {
  /** /api/v1/stream: `stats` each second and `log` lines */
  stream: EventFeed;
  /** /api/v1/shield/events/stream, opened when the shield view finds the shield running */
  shieldStream: EventFeed;
}

/** Calls `fn` now and every `ms` until the returned function is called; one call at a time. */
export function poll(fn: () => Promise<void>, ms: number): () => void {
  let stopped = false;
  let timer: number | undefined;
  const run = async (): Promise<void> => {
    try {
      await fn();
    } finally {
      if (!stopped) timer = window.setTimeout(run, ms);
    }
  };
  void run();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
