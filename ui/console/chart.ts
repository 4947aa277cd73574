// A live time series chart (uPlot on a canvas) with a bounded window: the last `window` points are
// kept and older ones dropped, so that a page left open for hours holds the same memory as after
// five minutes. It draws only while it is on screen; points that arrive while it is hidden are
// kept and drawn when it shows again. Its figure names the latest values in text for those who
// cannot see the canvas.
import uPlot from 'uplot';
import { h } from './dom.js';

export interface SeriesSpec {
  label: string;
  /** canvas colour of the line (and its legend marker) */
  stroke: string;
  fill?: string;
  /** a dashed line: segment lengths in pixels */
  dash?: number[];
}

export interface LiveChartOptions {
  title: string;
  series: SeriesSpec[];
  /** how the values of the y axis and the legend read (e.g. bit rates) */
  format: (v: number) => string;
  /** points kept at most (one a second: 300 = five minutes) */
  window?: number;
  height?: number;
  /** fixed y range, e.g. [0, 100] for a share in percent */
  range?: [number, number];
}

export class LiveChart {
  readonly element: HTMLElement;
  private readonly plotBox: HTMLDivElement;
  private readonly summary: HTMLParagraphElement;
  private readonly times: number[] = [];
  private readonly values: Array<Array<number | null>>;
  private plot: uPlot | null = null;
  private dirty = false;
  private readonly window: number;

  constructor(private readonly opts: LiveChartOptions) {
    this.window = opts.window ?? 300;
    this.values = opts.series.map(() => []);
    this.plotBox = h('div', { class: 'chart-plot', role: 'img', 'aria-label': `${opts.title}: no data yet` });
    this.summary = h('p', { class: 'chart-summary' }, 'no data yet');
    this.element = h('figure', { class: 'chart' }, h('figcaption', {}, opts.title), this.plotBox, this.summary);
    new ResizeObserver(() => this.fit()).observe(this.plotBox);
  }

  /** Adds one point per series at `timeMs`. */
  push(timeMs: number, values: Array<number | null>): void {
    this.times.push(timeMs / 1000);
    values.forEach((v, i) => this.values[i]?.push(v));
    if (this.times.length > this.window) {
      this.times.shift();
      for (const s of this.values) s.shift();
    }
    const latest = this.opts.series.map((s, i) => `${s.label} ${values[i] === null || values[i] === undefined ? 'n/a' : this.opts.format(values[i]!)}`).join(', ');
    this.summary.textContent = `now: ${latest}`;
    this.plotBox.setAttribute('aria-label', `${this.opts.title}, last ${this.times.length} seconds; now ${latest}`);
    this.dirty = true;
    this.draw();
  }

  /** Points held now (bounded by the window). */
  get size(): number {
    return this.times.length;
  }

  /** Draws what arrived while it was hidden; call when its view shows. */
  draw(): void {
    if (!this.dirty || !this.visible()) return;
    if (!this.plot) this.create();
    this.plot!.setData([this.times, ...this.values] as uPlot.AlignedData);
    this.dirty = false;
  }

  private visible(): boolean {
    return this.plotBox.isConnected && this.plotBox.clientWidth > 0;
  }

  private create(): void {
    const fmt = this.opts.format;
    this.plot = new uPlot(
      {
        width: this.plotBox.clientWidth,
        height: this.opts.height ?? 180,
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        scales: { x: { time: true }, y: this.opts.range ? { range: this.opts.range } : { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        axes: [
          // whole seconds at least: a chart that has just started would otherwise tick every 250 ms
          { stroke: '#333', grid: { stroke: '#e4e4e4' }, space: 60, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600] },
          { stroke: '#333', size: 80, grid: { stroke: '#e4e4e4' }, values: (_u, splits) => splits.map((v) => fmt(v)) },
        ],
        series: [
          { label: 'time' },
          ...this.opts.series.map((s) => ({
            label: s.label,
            stroke: s.stroke,
            width: 2,
            ...(s.fill ? { fill: s.fill } : {}),
            ...(s.dash ? { dash: s.dash } : {}),
            value: (_u: uPlot, v: number | null) => (v === null ? '-' : fmt(v)),
          })),
        ],
      },
      [this.times, ...this.values] as uPlot.AlignedData,
      this.plotBox,
    );
  }

  private fit(): void {
    if (!this.visible()) return;
    if (!this.plot) {
      this.draw();
      return;
    }
    const width = this.plotBox.clientWidth;
    if (width !== this.plot.width) this.plot.setSize({ width, height: this.opts.height ?? 180 });
    this.draw();
  }
}
