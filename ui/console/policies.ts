// The transport policies: the list, a form to add or edit one (the server's validation errors beside
// the field they name), the default policy, and the import of the original system's flat file. After
// every change the status says what the server re-applied to open connections (liveUpdate).
import { api, messageOf } from './api.js';
import { clock, h, select } from './dom.js';
import { FieldErrors } from './form-errors.js';
import { matchText, transportText } from './policy-text.js';
import { TransportFields } from './transport-form.js';
import type { Kernel, LiveUpdate, Policy, PolicyInput, Transport } from './types.js';
import type { View } from './view.js';
import { VirtualTable } from './virtual-table.js';

/** "re-applied to 3 open connections; MPTCP on/off applies to new connections only" */
export function liveUpdateText(u: LiveUpdate | undefined): string {
  if (!u) return '';
  const n = u.connectionsUpdated;
  const text = `re-applied to ${n} open ${n === 1 ? 'connection' : 'connections'}`;
  return u.notes.length > 0 ? `${text}; ${u.notes.join('; ')}` : text;
}

const CONFIRM_MS = 4000;

export class PoliciesView implements View {
  readonly id = 'policies';
  readonly title = 'Policies';
  readonly element: HTMLElement;
  private readonly status = h('p', { id: 'policies-status', class: 'status', role: 'status' });
  private readonly kernelLine = h('p', { id: 'policies-kernel', class: 'hint' });
  private readonly table: VirtualTable<Policy>;
  private readonly listCount = h('p', { class: 'count', id: 'policies-count' });
  // the add/edit form
  private readonly formTitle = h('h3', { id: 'policy-form-title' }, 'Add a policy');
  private readonly formError = h('p', { class: 'error', role: 'alert', id: 'policy-form-error' });
  private readonly errors = new FieldErrors(this.formError);
  private readonly matchKind = select([['host', 'host name or address'], ['cidr', 'address block (CIDR)']]);
  private readonly matchValue = h('input', { type: 'text', id: 'policy-match', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: '*.example.com' });
  private readonly matchPort = h('input', { type: 'number', id: 'policy-port', min: 1, max: 65535, inputmode: 'numeric', placeholder: 'any' });
  private readonly transport: TransportFields;
  private readonly via = h('input', { type: 'text', id: 'policy-via', autocomplete: 'off', spellcheck: 'false', placeholder: 'as --upstream' });
  private readonly comment = h('input', { type: 'text', id: 'policy-comment', autocomplete: 'off' });
  private readonly saveButton = h('button', { type: 'submit', id: 'policy-save' }, 'Add policy');
  private readonly cancelButton = h('button', { type: 'button', id: 'policy-cancel', hidden: true }, 'Cancel editing');
  private editing: Policy | null = null;
  // the default policy
  private readonly defaultError = h('p', { class: 'error', role: 'alert', id: 'default-form-error' });
  private readonly defaultErrors = new FieldErrors(this.defaultError, ['body.transport.', 'body.']);
  private readonly defaultTransport: TransportFields;
  // legacy import
  private readonly importError = h('p', { class: 'error', role: 'alert', id: 'import-error' });
  private readonly importErrors = new FieldErrors(this.importError);
  private readonly importText = h('textarea', { id: 'import-text', rows: 6, spellcheck: 'false' });
  private readonly importFile = h('input', { type: 'file', id: 'import-file', accept: '.txt,.conf,.list,text/plain' });
  private policies: Policy[] = [];

  constructor() {
    this.matchKind.id = 'policy-match-kind';
    this.transport = new TransportFields('policy', this.errors, 'transport.');
    this.defaultTransport = new TransportFields('default', this.defaultErrors, '', 'Default transport');
    this.table = new VirtualTable<Policy>({
      caption: 'Policy list',
      rowHeight: 34,
      empty: 'no policies: every destination gets the default',
      className: 'vt-policies',
      key: (p) => p.id,
      columns: [
        { header: 'ID', className: 'c-id', render: (p, td) => (td.textContent = String(p.id)) },
        { header: 'Match', className: 'c-match', render: (p, td) => (td.textContent = matchText(p.match)) },
        { header: 'Transport', className: 'c-transport', render: (p, td) => (td.textContent = transportText(p.transport)) },
        { header: 'Via', className: 'c-via', render: (p, td) => (td.textContent = p.via ?? '') },
        { header: 'Comment', className: 'c-comment', render: (p, td) => (td.textContent = p.comment ?? '') },
        { header: 'Changed', className: 'c-time', render: (p, td) => (td.textContent = clock(p.updatedAt)) },
        { header: 'Actions', className: 'c-actions', render: (p, td) => this.renderActions(p, td) },
      ],
    });

    const form = h(
      'form',
      { id: 'policy-form', novalidate: true, 'aria-labelledby': 'policy-form-title' },
      this.formTitle,
      h(
        'fieldset',
        {},
        h('legend', {}, 'Destination'),
        h(
          'div',
          { class: 'row' },
          this.errors.field('Match by', this.matchKind, []),
          this.errors.field('Host, address or block', this.matchValue, ['match', 'match.host', 'match.cidr'], 'host, *.wildcard, IP, or CIDR like 192.0.2.0/24'),
          this.errors.field('Port', this.matchPort, ['match.port']),
        ),
      ),
      this.transport.element,
      h('div', { class: 'row' }, this.errors.field('Via', this.via, ['via'], 'direct, or socks5://host:port'), this.errors.field('Comment', this.comment, ['comment'])),
      h('div', { class: 'actions' }, this.saveButton, this.cancelButton),
      this.formError,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.save();
    });
    this.cancelButton.addEventListener('click', () => this.edit(null));

    const defaultForm = h(
      'form',
      { id: 'default-form', novalidate: true, 'aria-labelledby': 'default-form-title' },
      h('h3', { id: 'default-form-title' }, 'Default policy'),
      h('p', { class: 'hint' }, 'for destinations no policy matches, and for the fields a matching policy leaves out'),
      this.defaultTransport.element,
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'default-save' }, 'Save default')),
      this.defaultError,
    );
    defaultForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.saveDefault();
    });

    this.importFile.addEventListener('change', () => void this.readFile());
    const importForm = h(
      'form',
      { id: 'import-form', novalidate: true, 'aria-labelledby': 'import-title' },
      h('h3', { id: 'import-title' }, 'Import from the original system'),
      h('p', { class: 'hint' }, 'its flat policy file, one destination a line; pick the file or paste it'),
      h('div', { class: 'field' }, h('label', { for: this.importFile.id }, 'Policy file'), this.importFile),
      this.importErrors.field('File contents', this.importText, ['text']),
      h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'import-submit' }, 'Import')),
      this.importError,
    );
    importForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.importLegacy();
    });

    this.element = h(
      'section',
      { id: 'view-policies', 'aria-labelledby': 'policies-title', hidden: true },
      h('h2', { id: 'policies-title' }, 'Policies'),
      this.kernelLine,
      this.status,
      this.listCount,
      this.table.element,
      form,
      defaultForm,
      importForm,
    );
  }

  show(): void {
    void this.loadKernel();
    void this.load();
    void this.loadDefault();
  }

  hide(): void {}

  reset(): void {
    this.edit(null);
    this.status.textContent = '';
    this.importText.value = '';
  }

  private async loadKernel(): Promise<void> {
    try {
      const k = await api<Kernel>('GET', '/api/v1/kernel');
      this.transport.setKernel(k);
      this.defaultTransport.setKernel(k);
      const m = k.mptcp;
      this.kernelLine.textContent = `This kernel: congestion controls ${k.congestionControls.join(', ') || 'unknown'}${k.defaultCongestion ? ` (default ${k.defaultCongestion})` : ''}; MPTCP ${m.enabled ? 'enabled' : 'disabled'}${m.schedulers.length > 0 ? `, schedulers ${m.schedulers.join(', ')}` : ''}${m.pathManagers.length > 0 ? `, path managers ${m.pathManagers.join(', ')}` : ''}.`;
    } catch (e) {
      this.kernelLine.textContent = `the kernel's choices are unknown: ${messageOf(e)}`;
    }
  }

  private async load(): Promise<void> {
    try {
      this.policies = (await api<{ policies: Policy[] }>('GET', '/api/v1/policies')).policies;
      this.table.setRows(this.policies);
      const n = this.policies.length;
      this.listCount.textContent = `${n} ${n === 1 ? 'policy' : 'policies'}`;
    } catch (e) {
      this.listCount.textContent = `policies: ${messageOf(e)}`;
    }
  }

  private async loadDefault(): Promise<void> {
    try {
      const t = await api<Transport>('GET', '/api/v1/policies/default');
      this.defaultTransport.load(t);
    } catch (e) {
      this.defaultError.textContent = `default policy: ${messageOf(e)}`;
    }
  }

  private renderActions(p: Policy, td: HTMLTableCellElement): void {
    let edit = td.querySelector<HTMLButtonElement>('button.edit');
    let del = td.querySelector<HTMLButtonElement>('button.delete');
    if (!edit || !del) {
      edit = h('button', { type: 'button', class: 'small edit' }, 'Edit');
      del = h('button', { type: 'button', class: 'small delete' }, 'Delete');
      const e = edit;
      const d = del;
      e.addEventListener('click', () => this.edit(this.policies.find((x) => x.id === Number(e.dataset.id)) ?? null));
      d.addEventListener('click', () => this.remove(Number(d.dataset.id), d));
      td.replaceChildren(edit, ' ', del);
    }
    if (edit.dataset.id !== String(p.id)) {
      del.textContent = 'Delete';
      delete del.dataset.armed;
    }
    edit.dataset.id = String(p.id);
    del.dataset.id = String(p.id);
    edit.setAttribute('aria-label', `Edit policy ${p.id} (${matchText(p.match)})`);
    del.setAttribute('aria-label', del.dataset.armed ? `Really delete? (policy ${p.id})` : `Delete policy ${p.id} (${matchText(p.match)})`);
  }

  /** Puts a policy in the form to change it (null: back to adding one). */
  private edit(p: Policy | null): void {
    this.editing = p;
    this.errors.clear();
    if (!p) {
      this.formTitle.textContent = 'Add a policy';
      this.saveButton.textContent = 'Add policy';
      this.cancelButton.hidden = true;
      this.matchValue.value = '';
      this.matchPort.value = '';
      this.via.value = '';
      this.comment.value = '';
      this.transport.load({});
      return;
    }
    this.formTitle.textContent = `Edit policy ${p.id}`;
    this.saveButton.textContent = 'Save policy';
    this.cancelButton.hidden = false;
    this.matchKind.value = p.match.cidr !== undefined ? 'cidr' : 'host';
    this.matchValue.value = p.match.cidr ?? p.match.host ?? '';
    this.matchPort.value = p.match.port === undefined ? '' : String(p.match.port);
    this.via.value = p.via ?? '';
    this.comment.value = p.comment ?? '';
    this.transport.load(p.transport);
    this.matchValue.focus();
  }

  private readForm(): PolicyInput {
    const value = this.matchValue.value.trim();
    const match: PolicyInput['match'] = this.matchKind.value === 'cidr' ? { cidr: value } : { host: value };
    const port = this.matchPort.value.trim();
    if (port !== '') match.port = Number(port);
    const input: PolicyInput = { match, transport: this.transport.read() };
    const via = this.via.value.trim();
    if (via !== '') input.via = via;
    const comment = this.comment.value.trim();
    if (comment !== '') input.comment = comment;
    return input;
  }

  private async save(): Promise<void> {
    const body = this.readForm();
    const editing = this.editing;
    this.saveButton.disabled = true;
    try {
      const saved = editing
        ? await api<Policy & { liveUpdate: LiveUpdate }>('PUT', `/api/v1/policies/${editing.id}`, body)
        : await api<Policy & { liveUpdate: LiveUpdate; notes?: string[] }>('POST', '/api/v1/policies', body);
      this.errors.clear();
      this.status.textContent = `Policy ${saved.id} (${matchText(saved.match)}) ${editing ? 'saved' : 'added'}; ${liveUpdateText(saved.liveUpdate)}.`;
      this.edit(null);
      await this.load();
    } catch (e) {
      this.errors.show(e, editing ? `Policy ${editing.id} not saved` : 'Policy not added');
      this.status.textContent = '';
    } finally {
      this.saveButton.disabled = false;
    }
  }

  private remove(id: number, button: HTMLButtonElement): void {
    if (!button.dataset.armed) {
      // a second click within a few seconds deletes: no modal dialog
      button.dataset.armed = '1';
      button.textContent = 'Really delete?';
      button.setAttribute('aria-label', `Really delete? (policy ${id})`);
      window.setTimeout(() => {
        if (button.dataset.armed && button.dataset.id === String(id)) {
          delete button.dataset.armed;
          button.textContent = 'Delete';
          button.setAttribute('aria-label', `Delete policy ${id}`);
        }
      }, CONFIRM_MS);
      return;
    }
    delete button.dataset.armed;
    button.textContent = 'Delete';
    void (async () => {
      try {
        await api('DELETE', `/api/v1/policies/${id}`);
        this.status.textContent = `Policy ${id} removed; the connections it applied to are matched again.`;
        if (this.editing?.id === id) this.edit(null);
        await this.load();
      } catch (e) {
        this.status.textContent = `Policy ${id} not removed: ${messageOf(e)}`;
      }
    })();
  }

  private async saveDefault(): Promise<void> {
    try {
      const r = await api<Transport & { liveUpdate: LiveUpdate }>('PUT', '/api/v1/policies/default', this.defaultTransport.read());
      this.defaultErrors.clear();
      const { liveUpdate, ...t } = r;
      this.defaultTransport.load(t);
      this.status.textContent = `Default policy saved (${transportText(t)}); ${liveUpdateText(liveUpdate)}.`;
    } catch (e) {
      this.defaultErrors.show(e, 'Default policy not saved');
    }
  }

  private async readFile(): Promise<void> {
    const file = this.importFile.files?.[0];
    if (!file) return;
    try {
      this.importText.value = await file.text();
      this.importErrors.clear();
    } catch (e) {
      this.importError.textContent = `cannot read ${file.name}: ${messageOf(e)}`;
    }
  }

  private async importLegacy(): Promise<void> {
    const text = this.importText.value;
    if (text.trim() === '') {
      this.importError.textContent = 'Nothing to import: pick the file or paste its lines.';
      return;
    }
    try {
      const r = await api<{ policies: Policy[]; liveUpdate: LiveUpdate; notes?: string[] }>('POST', '/api/v1/policies/import', { text });
      this.importErrors.clear();
      this.importText.value = '';
      this.importFile.value = '';
      const n = r.policies.length;
      const notes = r.notes && r.notes.length > 0 ? ` Translated: ${r.notes.join('; ')}.` : '';
      this.status.textContent = `Imported ${n} ${n === 1 ? 'policy' : 'policies'}; ${liveUpdateText(r.liveUpdate)}.${notes}`;
      await this.load();
    } catch (e) {
      this.importErrors.show(e, 'Not imported');
    }
  }
}
