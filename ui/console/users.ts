// Users (SOCKS, TURN, rendezvous and console access) and their devices (rendezvous). A new device's
// token is in the server's answer once: it is shown here once, with a hint to copy it, and kept
// nowhere; leaving the view, signing out or reloading forgets it.
import { api, messageOf } from './api.js';
import { clock, h, replace } from './dom.js';
import { FieldErrors } from './form-errors.js';
import type { Device, User } from './types.js';
import type { View } from './view.js';

function yesNo(v: boolean | undefined): string {
  return v === undefined ? '-' : v ? 'yes' : 'no';
}

export class UsersView implements View {
  readonly id = 'users';
  readonly title = 'Users';
  readonly element: HTMLElement;
  private readonly status = h('p', { id: 'users-status', class: 'status', role: 'status' });
  private readonly usersBody = h('tbody', { id: 'users-rows' });
  private readonly devicesBody = h('tbody', { id: 'devices-rows' });
  private readonly userError = h('p', { class: 'error', role: 'alert', id: 'user-form-error' });
  private readonly userErrors = new FieldErrors(this.userError);
  private readonly username = h('input', { type: 'text', id: 'user-name', autocomplete: 'off', spellcheck: 'false', required: true });
  private readonly password = h('input', { type: 'password', id: 'user-password', autocomplete: 'new-password', required: true });
  private readonly socks = h('input', { type: 'checkbox', id: 'user-socks', checked: true });
  private readonly turn = h('input', { type: 'checkbox', id: 'user-turn' });
  private readonly rendezvous = h('input', { type: 'checkbox', id: 'user-rendezvous' });
  private readonly consoleAccess = h('input', { type: 'checkbox', id: 'user-console' });
  private readonly deviceError = h('p', { class: 'error', role: 'alert', id: 'device-form-error' });
  private readonly deviceErrors = new FieldErrors(this.deviceError);
  private readonly deviceUser = h('input', { type: 'text', id: 'device-user', autocomplete: 'off', spellcheck: 'false', required: true });
  private readonly deviceUsers = h('datalist', { id: 'device-user-list' });
  private readonly deviceName = h('input', { type: 'text', id: 'device-name', autocomplete: 'off', spellcheck: 'false', required: true });
  private readonly tokenBox = h('div', { id: 'device-token', class: 'token-box', role: 'region', 'aria-labelledby': 'device-token-title', hidden: true });

  constructor() {
    this.deviceUser.setAttribute('list', this.deviceUsers.id);
    const check = (input: HTMLInputElement, label: string): HTMLElement => h('div', { class: 'field check' }, input, h('label', { for: input.id }, label));
    const userForm = h(
      'form',
      { id: 'user-form', novalidate: true, 'aria-labelledby': 'user-form-title' },
      h('h3', { id: 'user-form-title' }, 'Add a user'),
      h('div', { class: 'row' }, this.userErrors.field('Username', this.username, ['username'], 'A-Z a-z 0-9 . _ @ -'), this.userErrors.field('Password', this.password, ['password'])),
      h(
        'fieldset',
        {},
        h('legend', {}, 'May use'),
        h('div', { class: 'row' }, check(this.socks, 'the SOCKS proxy'), check(this.turn, 'TURN'), check(this.rendezvous, 'rendezvous (own devices)'), check(this.consoleAccess, 'this console')),
      ),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'user-add' }, 'Add user')),
      this.userError,
    );
    userForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.addUser();
    });
    const deviceForm = h(
      'form',
      { id: 'device-form', novalidate: true, 'aria-labelledby': 'device-form-title' },
      h('h3', { id: 'device-form-title' }, 'Add a device'),
      h('div', { class: 'row' }, this.deviceErrors.field('User', this.deviceUser, ['user']), this.deviceUsers, this.deviceErrors.field('Device name', this.deviceName, ['name'], 'A-Z a-z 0-9 . _ -')),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'device-add' }, 'Add device')),
      this.deviceError,
    );
    deviceForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.addDevice();
    });
    const head = (...titles: string[]): HTMLTableSectionElement => h('thead', {}, h('tr', {}, ...titles.map((t) => h('th', { scope: 'col' }, t))));
    this.element = h(
      'section',
      { id: 'view-users', 'aria-labelledby': 'users-title', hidden: true },
      h('h2', { id: 'users-title' }, 'Users and devices'),
      this.status,
      h('table', { class: 'grid', id: 'users-table' }, h('caption', {}, 'Users'), head('User', 'SOCKS', 'TURN', 'Rendezvous', 'Console', 'Added', 'Actions'), this.usersBody),
      userForm,
      h('table', { class: 'grid', id: 'devices-table' }, h('caption', {}, 'Devices'), head('ID', 'User', 'Name', 'Added', 'Actions'), this.devicesBody),
      deviceForm,
      this.tokenBox,
    );
  }

  show(): void {
    void this.load();
  }

  hide(): void {
    this.forgetToken();
  }

  reset(): void {
    this.forgetToken();
    this.status.textContent = '';
    this.usersBody.replaceChildren();
    this.devicesBody.replaceChildren();
  }

  private forgetToken(): void {
    this.tokenBox.replaceChildren();
    this.tokenBox.hidden = true;
  }

  private async load(): Promise<void> {
    try {
      const [users, devices] = await Promise.all([api<{ users: User[] }>('GET', '/api/v1/users'), api<{ devices: Device[] }>('GET', '/api/v1/devices')]);
      this.renderUsers(users.users);
      this.renderDevices(devices.devices);
    } catch (e) {
      this.status.textContent = `users: ${messageOf(e)}`;
    }
  }

  private renderUsers(users: User[]): void {
    this.deviceUsers.replaceChildren(...users.filter((u) => u.rendezvous).map((u) => h('option', { value: u.username })));
    if (users.length === 0) {
      replace(this.usersBody, h('tr', {}, h('td', { colspan: 7 }, 'no users')));
      return;
    }
    replace(
      this.usersBody,
      ...users.map((u) => {
        const del = h('button', { type: 'button', class: 'small', 'aria-label': `Remove user ${u.username}` }, 'Remove');
        del.addEventListener('click', () => void this.removeUser(u.username));
        return h(
          'tr',
          { 'data-user': u.username },
          h('td', {}, u.username),
          h('td', {}, yesNo(u.socks)),
          h('td', {}, u.turnRealm ? `yes (${u.turnRealm})` : 'no'),
          h('td', {}, yesNo(u.rendezvous)),
          h('td', {}, yesNo(u.console)),
          h('td', {}, clock(u.createdAt)),
          h('td', {}, del),
        );
      }),
    );
  }

  private renderDevices(devices: Device[]): void {
    if (devices.length === 0) {
      replace(this.devicesBody, h('tr', {}, h('td', { colspan: 5 }, 'no devices')));
      return;
    }
    replace(
      this.devicesBody,
      ...devices.map((d) => {
        const del = h('button', { type: 'button', class: 'small', 'aria-label': `Remove device ${d.name} of ${d.user}` }, 'Remove');
        del.addEventListener('click', () => void this.removeDevice(d));
        return h('tr', { 'data-device': d.id }, h('td', {}, String(d.id)), h('td', {}, d.user), h('td', {}, d.name), h('td', {}, clock(d.createdAt)), h('td', {}, del));
      }),
    );
  }

  private async addUser(): Promise<void> {
    const body: Record<string, unknown> = { username: this.username.value.trim(), password: this.password.value, socks: this.socks.checked, turn: this.turn.checked, rendezvous: this.rendezvous.checked };
    // only when asked: a server without console users does not know the field
    if (this.consoleAccess.checked) body.console = true;
    try {
      const u = await api<User>('POST', '/api/v1/users', body);
      this.userErrors.clear();
      this.status.textContent = `User ${u.username} added.`;
      this.username.value = '';
      this.password.value = '';
      await this.load();
    } catch (e) {
      this.userErrors.show(e, 'User not added');
    }
  }

  private async removeUser(username: string): Promise<void> {
    try {
      await api('DELETE', `/api/v1/users/${encodeURIComponent(username)}`);
      this.status.textContent = `User ${username} removed.`;
      await this.load();
    } catch (e) {
      this.status.textContent = `User ${username} not removed: ${messageOf(e)}`;
    }
  }

  private async addDevice(): Promise<void> {
    this.forgetToken();
    try {
      const r = await api<{ device: Device; token: string }>('POST', '/api/v1/devices', { user: this.deviceUser.value.trim(), name: this.deviceName.value.trim() });
      this.deviceErrors.clear();
      this.deviceName.value = '';
      this.status.textContent = `Device ${r.device.name} of ${r.device.user} added: copy its token now.`;
      this.showToken(r.device, r.token);
      await this.load();
    } catch (e) {
      this.deviceErrors.show(e, 'Device not added');
    }
  }

  private showToken(d: Device, token: string): void {
    const value = h('input', { type: 'text', id: 'device-token-value', readonly: true, spellcheck: 'false', autocomplete: 'off' });
    value.value = token;
    const copied = h('span', { class: 'hint', role: 'status' });
    const copy = h('button', { type: 'button', id: 'device-token-copy' }, 'Copy');
    copy.addEventListener('click', () => {
      value.select();
      navigator.clipboard?.writeText(token).then(
        () => (copied.textContent = 'copied'),
        () => (copied.textContent = 'selected: press Ctrl+C to copy'),
      ) ?? (copied.textContent = 'selected: press Ctrl+C to copy');
    });
    const done = h('button', { type: 'button', id: 'device-token-done' }, 'Done, hide it');
    done.addEventListener('click', () => this.forgetToken());
    replace(
      this.tokenBox,
      h('h3', { id: 'device-token-title' }, `Token of device ${d.name} (${d.user})`),
      h('p', {}, 'Copy it now: it is shown this once. The device gives it to `edgeward peer device` (EDGEWARD_DEVICE_TOKEN); only its hash is stored.'),
      h('div', { class: 'field' }, h('label', { for: value.id }, 'Device token'), value),
      h('div', { class: 'actions' }, copy, done, copied),
    );
    this.tokenBox.hidden = false;
    value.focus();
    value.select();
  }

  private async removeDevice(d: Device): Promise<void> {
    try {
      await api('DELETE', `/api/v1/devices/${d.id}`);
      this.status.textContent = `Device ${d.name} of ${d.user} removed; its token no longer works.`;
      await this.load();
    } catch (e) {
      this.status.textContent = `Device ${d.name} not removed: ${messageOf(e)}`;
    }
  }
}
