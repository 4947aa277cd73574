// The transport fields of a policy (and of the default policy): MPTCP, congestion control, Nagle,
// keepalive, MPTCP scheduler and path manager, subflows, backup. The kernel's choices come from
// GET /api/v1/kernel; congestion control is free text with the kernel's list as suggestions, so a
// name this kernel lacks reaches the server, whose error then shows beside the field.
import { h, newId, select } from './dom.js';
import type { FieldErrors } from './form-errors.js';
import type { Kernel, Transport } from './types.js';

const INHERIT = '';

function triState(inheritLabel: string, on: string, off: string): HTMLSelectElement {
  return select([[INHERIT, inheritLabel], ['true', on], ['false', off]]);
}

/** Sets a select's options, keeping `value` among them even when the kernel does not list it. */
function setChoices(s: HTMLSelectElement, inheritLabel: string, choices: string[], value: string | undefined): void {
  const all = value && !choices.includes(value) ? [...choices, value] : choices;
  s.replaceChildren(h('option', { value: INHERIT }, inheritLabel), ...all.map((c) => h('option', { value: c }, c)));
  s.value = value ?? INHERIT;
}

export class TransportFields {
  readonly element: HTMLFieldSetElement;
  private readonly mptcp = triState('as the default', 'on (MPTCP)', 'off (TCP)');
  private readonly congestion: HTMLInputElement;
  private readonly congestionList: HTMLDataListElement;
  private readonly noDelay = triState('as the default', 'nodelay (Nagle off)', 'Nagle on');
  private readonly keepAlive = select([[INHERIT, 'as the default'], ['off', 'off'], ['on', 'these timers']]);
  private readonly kaIdle = h('input', { type: 'number', min: 1, max: 32767, inputmode: 'numeric' });
  private readonly kaInterval = h('input', { type: 'number', min: 1, max: 32767, inputmode: 'numeric' });
  private readonly kaCount = h('input', { type: 'number', min: 1, max: 127, inputmode: 'numeric' });
  private readonly kaBox: HTMLDivElement;
  private readonly scheduler = h('select');
  private readonly pathManager = h('select');
  private readonly subflows = h('input', { type: 'number', min: 1, max: 8, inputmode: 'numeric' });
  private readonly backup = h('input', { type: 'text', autocomplete: 'off', placeholder: 'eth1, 192.0.2.7' });
  private kernel: Kernel | null = null;

  /** `idPrefix`: ids of the controls (policy-congestion...); `base`: the server's path of the transport (transport. or empty). */
  constructor(idPrefix: string, errors: FieldErrors, base: string, legend = 'Transport') {
    this.congestionList = h('datalist', { id: newId(`${idPrefix}-cc-list`) });
    this.congestion = h('input', { type: 'text', id: `${idPrefix}-congestion`, list: this.congestionList.id, autocomplete: 'off', spellcheck: 'false', placeholder: 'as the default' });
    this.mptcp.id = `${idPrefix}-mptcp`;
    this.noDelay.id = `${idPrefix}-nodelay`;
    this.keepAlive.id = `${idPrefix}-keepalive`;
    this.scheduler.id = `${idPrefix}-scheduler`;
    this.pathManager.id = `${idPrefix}-path-manager`;
    this.subflows.id = `${idPrefix}-subflows`;
    this.backup.id = `${idPrefix}-backup`;
    this.kaIdle.id = `${idPrefix}-ka-idle`;
    this.kaInterval.id = `${idPrefix}-ka-interval`;
    this.kaCount.id = `${idPrefix}-ka-count`;
    const p = (name: string): string[] => [`${base}${name}`];
    this.kaBox = h(
      'div',
      { class: 'row', hidden: true },
      errors.field('Idle (s)', this.kaIdle, p('keepAlive.idle')),
      errors.field('Interval (s)', this.kaInterval, p('keepAlive.interval')),
      errors.field('Probes', this.kaCount, p('keepAlive.count')),
    );
    this.keepAlive.addEventListener('change', () => (this.kaBox.hidden = this.keepAlive.value !== 'on'));
    setChoices(this.scheduler, 'as the default', [], undefined);
    setChoices(this.pathManager, 'as the default', [], undefined);
    this.element = h(
      'fieldset',
      {},
      h('legend', {}, legend),
      h(
        'div',
        { class: 'row' },
        errors.field('MPTCP', this.mptcp, p('mptcp')),
        errors.field('Congestion control', this.congestion, p('congestion'), 'a name from net.ipv4.tcp_available_congestion_control'),
        this.congestionList,
        errors.field('Nagle', this.noDelay, p('noDelay')),
        errors.field('Keepalive', this.keepAlive, p('keepAlive')),
      ),
      this.kaBox,
      h(
        'div',
        { class: 'row' },
        errors.field('MPTCP scheduler', this.scheduler, p('scheduler'), 'new connections only'),
        errors.field('Path manager', this.pathManager, p('pathManager'), 'new connections only'),
        errors.field('Subflows', this.subflows, p('subflows'), 'ndiffports: subflows in all'),
        errors.field('Backup paths', this.backup, p('backup'), 'fullmesh: devices or addresses, comma-separated'),
      ),
    );
  }

  /** The kernel's choices (congestion controls, schedulers, path managers). */
  setKernel(k: Kernel): void {
    this.kernel = k;
    this.congestionList.replaceChildren(...k.congestionControls.map((c) => h('option', { value: c })));
    setChoices(this.scheduler, 'as the default', k.mptcp.schedulers, this.scheduler.value || undefined);
    setChoices(this.pathManager, 'as the default', k.mptcp.pathManagers, this.pathManager.value || undefined);
    this.congestion.placeholder = k.defaultCongestion ? `as the default (kernel: ${k.defaultCongestion})` : 'as the default';
  }

  /** Fills the fields from a transport. */
  load(t: Transport): void {
    this.mptcp.value = t.mptcp === undefined ? INHERIT : String(t.mptcp);
    this.congestion.value = t.congestion ?? '';
    this.noDelay.value = t.noDelay === undefined ? INHERIT : String(t.noDelay);
    const ka = t.keepAlive;
    this.keepAlive.value = ka === undefined ? INHERIT : ka === false ? 'off' : 'on';
    this.kaIdle.value = ka ? String(ka.idle) : '';
    this.kaInterval.value = ka ? String(ka.interval) : '';
    this.kaCount.value = ka ? String(ka.count) : '';
    this.kaBox.hidden = this.keepAlive.value !== 'on';
    setChoices(this.scheduler, 'as the default', this.kernel?.mptcp.schedulers ?? [], t.scheduler);
    setChoices(this.pathManager, 'as the default', this.kernel?.mptcp.pathManagers ?? [], t.pathManager);
    this.subflows.value = t.subflows === undefined ? '' : String(t.subflows);
    this.backup.value = (t.backup ?? []).join(', ');
  }

  /** The transport the fields say; fields left as the default are absent. Numbers are not checked here: the server judges them and names the field. */
  read(): Transport {
    const t: Transport = {};
    if (this.mptcp.value !== INHERIT) t.mptcp = this.mptcp.value === 'true';
    const cc = this.congestion.value.trim();
    if (cc !== '') t.congestion = cc;
    if (this.noDelay.value !== INHERIT) t.noDelay = this.noDelay.value === 'true';
    if (this.keepAlive.value === 'off') t.keepAlive = false;
    if (this.keepAlive.value === 'on') t.keepAlive = { idle: num(this.kaIdle), interval: num(this.kaInterval), count: num(this.kaCount) };
    if (this.scheduler.value !== INHERIT) t.scheduler = this.scheduler.value;
    if (this.pathManager.value !== INHERIT) t.pathManager = this.pathManager.value;
    if (this.subflows.value.trim() !== '') t.subflows = num(this.subflows);
    const backup = this.backup.value.split(',').map((s) => s.trim()).filter(Boolean);
    if (backup.length > 0) t.backup = backup;
    return t;
  }
}

/** The number typed; NaN (null in JSON) when there is none, so that the server names the field. */
function num(input: HTMLInputElement): number {
  const v = input.value.trim();
  return v === '' ? NaN : Number(v);
}
