// The server's validation errors next to the field they name: every error names its field as a path
// (body.transport.congestion, body.match.port, body.policies[3].match); a form registers its controls
// under those paths, and an error lands beside the control of the longest path that matches, tied to
// it by aria-describedby and marked aria-invalid. An error naming no known field goes to the form.
import { ApiError, messageOf } from './api.js';
import { h, newId } from './dom.js';

type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

interface Slot {
  control: Control;
  error: HTMLElement;
}

export class FieldErrors {
  private readonly slots = new Map<string, Slot>();
  private readonly all: Slot[] = [];

  /**
   * `formError`: where errors of no known field go; `prefix`: stripped from the server's field
   * names before lookup (body., or body.transport. for a form whose body is the transport itself).
   */
  constructor(
    private readonly formError: HTMLElement,
    private readonly prefixes: string[] = ['body.'],
  ) {}

  /** A labelled control with an error slot; `paths`: the server's names for it (after the prefix). */
  field(label: string, control: Control, paths: string[], hint?: string): HTMLDivElement {
    if (!control.id) control.id = newId('f');
    const error = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true });
    const wrap = h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
    const describedBy = [error.id];
    if (hint) {
      const hintEl = h('p', { class: 'hint', id: `${control.id}-hint` }, hint);
      wrap.append(hintEl);
      describedBy.unshift(hintEl.id);
    }
    wrap.append(error);
    control.setAttribute('aria-describedby', describedBy.join(' '));
    this.register(control, error, paths);
    return wrap;
  }

  /** Registers a control whose error slot the caller placed. */
  register(control: Control, error: HTMLElement, paths: string[]): void {
    const slot = { control, error };
    this.all.push(slot);
    for (const p of paths) this.slots.set(p, slot);
  }

  clear(): void {
    for (const s of this.all) {
      s.error.textContent = '';
      s.error.hidden = true;
      s.control.removeAttribute('aria-invalid');
    }
    this.formError.textContent = '';
  }

  /** Shows an error of a call: beside its field when the server named one we know, else on the form. */
  show(e: unknown, what: string): void {
    this.clear();
    const slot = e instanceof ApiError && e.field ? this.slotOf(e.field) : undefined;
    if (!slot) {
      this.formError.textContent = `${what}: ${messageOf(e)}`;
      return;
    }
    const err = e as ApiError;
    const listed = err.available.length > 0 && !err.available.every((a) => err.message.includes(a));
    slot.error.textContent = listed ? `${err.message} (available: ${err.available.join(', ')})` : err.message;
    slot.error.hidden = false;
    slot.control.setAttribute('aria-invalid', 'true');
    this.formError.textContent = `${what}: ${err.message}`;
    slot.control.focus();
  }

  private slotOf(field: string): Slot | undefined {
    let path = field;
    for (const p of this.prefixes) {
      if (path.startsWith(p)) {
        path = path.slice(p.length);
        break;
      }
    }
    path = path.replace(/\[\d+\]/g, '');
    for (;;) {
      const s = this.slots.get(path);
      if (s) return s;
      const dot = path.lastIndexOf('.');
      if (dot < 0) return undefined;
      path = path.slice(0, dot);
    }
  }
}
