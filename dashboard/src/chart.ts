/**
 * The wait/SLO chart of the overview: one line per model and tier over the frames the tab has
 * seen (up to an hour), drawn by uPlot and redrawn as frames arrive. uPlot is most of the
 * page's JavaScript and only this chart needs it: it is loaded when the chart is first shown,
 * so the sign-in comes up without it.
 */
import { html } from "htm/preact";
import { useEffect, useRef } from "preact/hooks";
import type uPlot from "uplot";
import type { LiveFrame } from "../../shared/api.ts";
import { waitOverSlo } from "./rates.ts";

const COLOURS = ["#2f7ed8", "#d9534f", "#5cb85c", "#f0ad4e", "#8e44ad", "#16a085", "#c0392b", "#7f8c8d"];

/** The series of a history: x in seconds since the epoch, one y per model and tier. */
export function chartData(history: readonly LiveFrame[], lines: readonly { model: string; tier: string }[]) {
  const xs = history.map((f) => f.at / 1000);
  const ys = lines.map((l) => history.map((f) => waitOverSlo(f, l.model, l.tier)));
  return [xs, ...ys] as uPlot.AlignedData;
}

export function WaitChart(props: { history: readonly LiveFrame[]; lines: { model: string; tier: string }[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = props.lines.map((l) => `${l.model}/${l.tier}`).join(",");
  const history = useRef(props.history);
  history.current = props.history;
  useEffect(() => {
    let gone = false;
    void import("uplot").then(({ default: UPlot }) => {
      if (gone || !box.current) return;
      plot.current = new UPlot(options(box.current), chartData(history.current, props.lines), box.current);
    });
    return () => {
      gone = true;
      plot.current?.destroy();
      plot.current = null;
    };
    // Rebuilt only when the set of lines changes; new frames go through setData below.
  }, [key]);
  useEffect(() => {
    plot.current?.setData(chartData(props.history, props.lines));
  }, [props.history]);
  return html`<div class="chart" ref=${box} data-testid="wait-chart"></div>`;

  function options(el: HTMLElement): uPlot.Options {
    // A canvas knows no currentColor: the axes take the page's text colour (light or dark) now.
    const ink = getComputedStyle(el).color;
    return {
      width: Math.max(320, el.clientWidth),
      height: 220,
      scales: {
        // At least the last minute, so the first few frames are not stretched over years.
        x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] },
        y: { range: (_u, _min, max) => [0, Math.max(1.2, max * 1.1)] },
      },
      axes: [
        { stroke: ink, grid: { stroke: "rgba(128,128,128,0.2)" } },
        { stroke: ink, grid: { stroke: "rgba(128,128,128,0.2)" }, label: "wait / SLO (×)" },
      ],
      series: [
        {},
        ...props.lines.map((l, i) => ({
          label: `${l.model} · ${l.tier}`,
          stroke: COLOURS[i % COLOURS.length],
          width: 2,
          value: (_u: uPlot, v: number | null) => (v === null ? "—" : `${v.toFixed(2)} ×`),
        })),
      ],
    };
  }
}
