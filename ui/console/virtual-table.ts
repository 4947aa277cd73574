// A table that stays smooth with tens of thousands of rows: every row has one fixed height, only the
// rows in view (and a few either side) are in the DOM, and two spacer rows stand for the others so
// that the scrollbar is that of the whole table. It is still a <table> with its header cells, and
// tells assistive technology how many rows there are (aria-rowcount, aria-rowindex).
import { h } from './dom.js';

export interface Column<T> {
  header: string;
  /** a class on the header and the cells (widths live in style.css) */
  className?: string;
  /** fills the cell for `row` (it holds what the last row rendered there had: replace it; reuse a focusable control so that focus stays) */
  render(row: T, cell: HTMLTableCellElement): void;
}

export interface VirtualTableOptions<T> {
  caption: string;
  columns: Array<Column<T>>;
  /** pixels; every row has this height */
  rowHeight: number;
  /** what to show when there are no rows */
  empty: string;
  /** a class on the scroll container (its height lives in style.css) */
  className?: string;
  /** a stable key per row, put in the row's data-key */
  key?: (row: T) => string | number;
}

/** Rows rendered beyond the visible ones, above and below. */
const OVERSCAN = 8;

export class VirtualTable<T> {
  /** the scroll container to put on the page */
  readonly element: HTMLDivElement;
  private readonly table: HTMLTableElement;
  private readonly thead: HTMLTableSectionElement;
  private readonly tbody: HTMLTableSectionElement;
  private readonly top: HTMLTableCellElement;
  private readonly bottom: HTMLTableCellElement;
  private readonly emptyRow: HTMLTableRowElement;
  private readonly pool: HTMLTableRowElement[] = [];
  private rows: readonly T[] = [];
  private frame = 0;

  constructor(private readonly opts: VirtualTableOptions<T>) {
    const n = opts.columns.length;
    this.top = h('td', { colspan: n, class: 'vt-spacer' });
    this.bottom = h('td', { colspan: n, class: 'vt-spacer' });
    this.emptyRow = h('tr', { class: 'vt-empty' }, h('td', { colspan: n }, opts.empty));
    this.thead = h('thead', {}, h('tr', { 'aria-rowindex': 1 }, ...opts.columns.map((c) => h('th', { scope: 'col', class: c.className }, c.header))));
    this.tbody = h('tbody', {}, h('tr', { 'aria-hidden': 'true' }, this.top), h('tr', { 'aria-hidden': 'true' }, this.bottom));
    this.table = h('table', { class: 'vt-table' }, h('caption', { class: 'visually-hidden' }, opts.caption), this.thead, this.tbody);
    this.element = h('div', { class: `vt ${opts.className ?? ''}`, tabindex: 0, role: 'region', 'aria-label': opts.caption }, this.table);
    this.element.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(this.element);
    this.setRows([]);
  }

  /** Shows these rows (the scroll position stays where it is). */
  setRows(rows: readonly T[]): void {
    this.rows = rows;
    this.table.setAttribute('aria-rowcount', String(rows.length + 1));
    this.render();
  }

  /** How many rows the DOM holds now (for tests and the curious). */
  get renderedRows(): number {
    return this.tbody.querySelectorAll('tr.vt-row').length;
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const { rowHeight, columns } = this.opts;
    const total = this.rows.length;
    if (total === 0) {
      for (const tr of this.pool) tr.remove();
      this.top.style.height = '0px';
      this.bottom.style.height = '0px';
      if (!this.emptyRow.isConnected) this.tbody.insertBefore(this.emptyRow, this.bottom.parentElement);
      return;
    }
    this.emptyRow.remove();
    const headerHeight = this.thead.offsetHeight;
    const viewport = this.element.clientHeight || rowHeight * 20;
    const scrolled = Math.max(0, this.element.scrollTop - headerHeight);
    const first = Math.max(0, Math.floor(scrolled / rowHeight) - OVERSCAN);
    const last = Math.min(total, Math.ceil((scrolled + viewport) / rowHeight) + OVERSCAN);
    const count = last - first;
    while (this.pool.length < count) {
      const tr = h('tr', { class: 'vt-row' }, ...columns.map((c) => h('td', { class: c.className })));
      tr.style.height = `${rowHeight}px`;
      this.pool.push(tr);
    }
    const anchor = this.bottom.parentElement!;
    for (let i = 0; i < this.pool.length; i++) {
      const tr = this.pool[i]!;
      if (i >= count) {
        tr.remove();
        continue;
      }
      const row = this.rows[first + i]!;
      tr.setAttribute('aria-rowindex', String(first + i + 2));
      if (this.opts.key) tr.dataset.key = String(this.opts.key(row));
      const cells = tr.cells;
      for (let c = 0; c < columns.length; c++) {
        columns[c]!.render(row, cells[c]!);
      }
    }
    // in order before the bottom spacer, moving only rows that are out of place
    let next: ChildNode = anchor;
    for (let i = count - 1; i >= 0; i--) {
      const tr = this.pool[i]!;
      if (tr.nextSibling !== next || tr.parentNode !== this.tbody) this.tbody.insertBefore(tr, next);
      next = tr;
    }
    this.top.style.height = `${first * rowHeight}px`;
    this.bottom.style.height = `${(total - last) * rowHeight}px`;
  }
}
