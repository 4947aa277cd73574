// The console's entry: the session (sign in with the API token or as a user with console access,
// sign out, back to the form on any 401), the two shared event streams, and the router that shows
// one view per location hash (#/overview, #/connections, ...).
import { messageOf, onUnauthorized } from './api.js';
import { ConnectionsView } from './connections.js';
import { byId, h } from './dom.js';
import { LogsView } from './logs.js';
import { OverviewView } from './overview.js';
import { PoliciesView } from './policies.js';
import { RendezvousView } from './rendezvous.js';
import { forget, resume, signIn, signOut, type Credentials, type Session } from './session.js';
import { ShieldView } from './shield.js';
import { EventFeed, type FeedState } from './sse.js';
import { UsersView } from './users.js';
import type { AppContext, View } from './view.js';

const DEFAULT_ROUTE = 'overview';
const STREAM_RETRY_MS = 3000;

class Console {
  private readonly ctx: AppContext;
  private readonly views: View[];
  private current: View | null = null;
  private signedIn = false;
  private readonly navLinks = new Map<string, HTMLAnchorElement>();

  constructor() {
    this.ctx = {
      stream: new EventFeed('/api/v1/stream', () => void this.streamRefused()),
      // a refused shield stream is opened again by the shield view's next look at the shield
      shieldStream: new EventFeed('/api/v1/shield/events/stream'),
    };
    this.views = [new OverviewView(this.ctx), new ConnectionsView(), new PoliciesView(), new UsersView(), new RendezvousView(), new ShieldView(this.ctx), new LogsView(this.ctx)];
    const container = byId('views');
    const navList = byId('nav-list');
    for (const v of this.views) {
      container.append(v.element);
      const a = h('a', { href: `#/${v.id}` }, v.title);
      this.navLinks.set(v.id, a);
      navList.append(h('li', {}, a));
      v.element.querySelector('h2')?.setAttribute('tabindex', '-1');
    }
    const feedState = byId('feed-state');
    this.ctx.stream.onState((s: FeedState) => {
      feedState.textContent = s === 'open' ? 'live' : s === 'connecting' ? 'reconnecting…' : '';
      feedState.className = `feed feed-${s}`;
    });
    onUnauthorized(() => {
      if (!this.signedIn) return;
      forget();
      this.showSignIn('Your session has ended: sign in again.');
    });
    window.addEventListener('hashchange', () => this.route(true));
    byId('sign-out').addEventListener('click', () => void this.signOut());
    byId<HTMLFormElement>('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.signIn({ token: byId<HTMLInputElement>('signin-token').value.trim() }, 'signin-token');
    });
    byId<HTMLFormElement>('user-signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.signIn({ username: byId<HTMLInputElement>('signin-username').value.trim(), password: byId<HTMLInputElement>('signin-password').value }, 'signin-password');
    });
  }

  async start(): Promise<void> {
    const boot = byId('boot');
    try {
      const s = await resume();
      boot.remove();
      if (s) this.enter(s);
      else this.showSignIn();
    } catch (e) {
      boot.textContent = `The gateway cannot be reached: ${messageOf(e)}. Reload to try again.`;
    }
  }

  private async signIn(credentials: Credentials, clearId: string): Promise<void> {
    const error = byId('signin-error');
    error.textContent = '';
    const buttons = document.querySelectorAll<HTMLButtonElement>('#signin button');
    buttons.forEach((b) => (b.disabled = true));
    try {
      const s = await signIn(credentials);
      byId<HTMLInputElement>(clearId).value = '';
      this.enter(s);
    } catch (e) {
      error.textContent = messageOf(e);
      byId<HTMLInputElement>(clearId).focus();
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  private async signOut(): Promise<void> {
    try {
      await signOut();
    } catch {
      // signed out here all the same
    }
    this.showSignIn('Signed out.');
  }

  /** Signed in: the streams open, the navigation shows, the route's view shows. */
  private enter(s: Session): void {
    this.signedIn = true;
    byId('signin').hidden = true;
    byId('signin-error').textContent = '';
    byId('nav').hidden = false;
    byId('sign-out').hidden = false;
    byId('who').textContent = s.user === null ? 'signed in with the API token' : `signed in as ${s.user}`;
    this.ctx.stream.open();
    this.route(false);
  }

  private showSignIn(message = ''): void {
    this.signedIn = false;
    this.ctx.stream.close();
    this.ctx.shieldStream.close();
    this.current?.hide();
    this.current = null;
    for (const v of this.views) {
      v.element.hidden = true;
      v.reset?.();
    }
    byId('nav').hidden = true;
    byId('sign-out').hidden = true;
    byId('who').textContent = '';
    byId('signin').hidden = false;
    byId('signin-status').textContent = message;
    document.title = 'Sign in - edgeward console';
    byId<HTMLInputElement>('signin-token').focus();
  }

  /** The stream was refused: a 401 means the session is over, anything else is tried again. */
  private async streamRefused(): Promise<void> {
    if (!this.signedIn) return;
    try {
      const s = await resume();
      if (!s) {
        forget();
        this.showSignIn('Your session has ended: sign in again.');
        return;
      }
    } catch {
      // the gateway is away: try again
    }
    if (this.signedIn) this.ctx.stream.reopenAfter(STREAM_RETRY_MS);
  }

  private route(userNavigated: boolean): void {
    if (!this.signedIn) return;
    const id = /^#\/([a-z]+)/.exec(location.hash)?.[1] ?? DEFAULT_ROUTE;
    const view = this.views.find((v) => v.id === id);
    if (!view) {
      location.replace(`#/${DEFAULT_ROUTE}`);
      return;
    }
    if (this.current !== view) {
      this.current?.hide();
      if (this.current) this.current.element.hidden = true;
      this.current = view;
      view.element.hidden = false;
      view.show();
    }
    for (const [vid, a] of this.navLinks) {
      if (vid === id) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = `${view.title} - edgeward console`;
    if (userNavigated) view.element.querySelector<HTMLElement>('h2')?.focus();
  }
}

function main(): void {
  void new Console().start();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', main);
else main();
