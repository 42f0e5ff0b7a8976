/**
 * A hand-built SVG chart for the fairness benchmark: one panel per policy, one line per tier of
 * wait/SLO over time on a log axis, with the SLO (1×) marked and the offered load drawn as a
 * grey area on a linear right-hand axis. Plain strings, no dependency.
 */

export interface ChartSeries {
  name: string;
  /** One value per time bucket; null where the bucket has none. */
  values: readonly (number | null)[];
}

export interface ChartPanel {
  title: string;
  series: readonly ChartSeries[];
}

export interface FairnessChartSpec {
  title: string;
  /** Lines under the title. */
  subtitle: readonly string[];
  /** Width of one bucket (h). */
  bucketH: number;
  /** Where the time axis ends (h). */
  endH: number;
  /** Realized offered load per bucket (× capacity). */
  load: readonly number[];
  /** The load profile the trace was drawn from (× capacity at h hours). */
  profile: (h: number) => number;
  panels: readonly ChartPanel[];
}

const COLORS = ["#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b", "#e377c2"];
const WIDTH = 980;
const PANEL_H = 230;
const LEFT = 64;
const RIGHT = 56;
/** Where the first panel's block starts, below a one-line subtitle; each further line adds LINE. */
const TOP = 78;
const LINE = 14;
const GAP = 46;
const Y_MIN = 0.01;

function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

function n(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

/** Renders the chart as a standalone SVG document. */
export function fairnessChart(spec: FairnessChartSpec): string {
  const values = spec.panels.flatMap((p) => p.series.flatMap((s) => s.values.filter((v): v is number => v !== null)));
  const yMax = 10 ** Math.max(1, Math.ceil(Math.log10(Math.max(...values, 1))));
  const loadMax = Math.max(2.5, Math.ceil(Math.max(...spec.load, 0) * 2) / 2);
  const plotW = WIDTH - LEFT - RIGHT;
  const extra = Math.max(0, spec.subtitle.length - 1) * LINE;
  const legendY = 56 + extra;
  const height = TOP + extra + spec.panels.length * (PANEL_H + GAP) + 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="20" font-size="14" font-weight="600">${esc(spec.title)}</text>`,
    ...spec.subtitle.map((line, i) => `<text x="${LEFT}" y="${38 + i * LINE}" fill="#444">${esc(line)}</text>`),
  ];
  // Legend.
  const names = spec.panels[0]?.series.map((s) => s.name) ?? [];
  let lx = LEFT;
  for (const [i, name] of names.entries()) {
    const c = COLORS[i % COLORS.length]!;
    out.push(
      `<line x1="${lx}" y1="${legendY}" x2="${lx + 18}" y2="${legendY}" stroke="${c}" stroke-width="2.5"/>`,
      `<text x="${lx + 22}" y="${legendY + 4}">${esc(name)}</text>`,
    );
    lx += 34 + name.length * 7;
  }
  out.push(
    `<rect x="${lx}" y="${legendY - 6}" width="18" height="11" fill="#000" fill-opacity="0.08"/>`,
    `<text x="${lx + 22}" y="${legendY + 4}">offered load (right axis)</text>`,
  );
  lx += 170;
  out.push(
    `<line x1="${lx}" y1="${legendY}" x2="${lx + 18}" y2="${legendY}" stroke="#000" stroke-dasharray="5 3"/>`,
    `<text x="${lx + 22}" y="${legendY + 4}">wait = SLO</text>`,
  );
  const xOf = (h: number): number => LEFT + (h / spec.endH) * plotW;
  for (const [pi, panel] of spec.panels.entries()) {
    const top = TOP + extra + pi * (PANEL_H + GAP) + 18;
    const bottom = top + PANEL_H;
    const yOf = (v: number): number => {
      const f =
        (Math.log10(Math.max(Y_MIN, Math.min(yMax, v))) - Math.log10(Y_MIN)) / (Math.log10(yMax) - Math.log10(Y_MIN));
      return bottom - f * PANEL_H;
    };
    const yLoad = (l: number): number => bottom - (l / loadMax) * PANEL_H;
    out.push(
      `<text x="${LEFT}" y="${top - 6}" font-size="12" font-weight="600">${esc(panel.title)}</text>`,
      `<rect x="${LEFT}" y="${top}" width="${plotW}" height="${PANEL_H}" fill="none" stroke="#999"/>`,
    );
    // Offered load: a grey step area, and the profile it was drawn from as a thin line.
    const area: string[] = [`M${n(xOf(0))},${n(bottom)}`];
    for (const [i, l] of spec.load.entries()) {
      area.push(
        `L${n(xOf(i * spec.bucketH))},${n(yLoad(l))}`,
        `L${n(xOf(Math.min(spec.endH, (i + 1) * spec.bucketH)))},${n(yLoad(l))}`,
      );
    }
    area.push(`L${n(xOf(spec.endH))},${n(bottom)}Z`);
    out.push(`<path d="${area.join("")}" fill="#000" fill-opacity="0.08" stroke="none"/>`);
    const prof: string[] = [];
    for (let k = 0; k <= 200; k++) {
      const h = (k / 200) * spec.endH;
      prof.push(`${k === 0 ? "M" : "L"}${n(xOf(h))},${n(yLoad(spec.profile(h)))}`);
    }
    out.push(`<path d="${prof.join("")}" fill="none" stroke="#000" stroke-opacity="0.25"/>`);
    // Log grid on the left axis.
    for (let e = Math.log10(Y_MIN); e <= Math.log10(yMax) + 1e-9; e++) {
      const v = 10 ** e;
      const y = yOf(v);
      const label = v < 1 ? (e === Math.log10(Y_MIN) ? `≤${v}` : String(v)) : `${v}`;
      out.push(
        `<line x1="${LEFT}" y1="${n(y)}" x2="${LEFT + plotW}" y2="${n(y)}" stroke="#000" stroke-opacity="${v === 1 ? 0.9 : 0.1}"${v === 1 ? ' stroke-dasharray="5 3"' : ""}/>`,
        `<text x="${LEFT - 6}" y="${n(y + 4)}" text-anchor="end">${label}×</text>`,
      );
    }
    // Right axis: load.
    for (let l = 0; l <= loadMax + 1e-9; l += 0.5) {
      out.push(`<text x="${LEFT + plotW + 6}" y="${n(yLoad(l) + 4)}" fill="#777">${l}×</text>`);
    }
    // Time axis.
    for (let h = 0; h <= spec.endH + 1e-9; h++) {
      out.push(
        `<line x1="${n(xOf(h))}" y1="${bottom}" x2="${n(xOf(h))}" y2="${bottom + 4}" stroke="#999"/>`,
        `<text x="${n(xOf(h))}" y="${bottom + 16}" text-anchor="middle">${h} h</text>`,
      );
    }
    out.push(
      `<text x="${LEFT - 48}" y="${(top + bottom) / 2}" transform="rotate(-90 ${LEFT - 48} ${(top + bottom) / 2})" text-anchor="middle" fill="#444">p95 wait / SLO</text>`,
      `<text x="${LEFT + plotW + 44}" y="${(top + bottom) / 2}" transform="rotate(90 ${LEFT + plotW + 44} ${(top + bottom) / 2})" text-anchor="middle" fill="#777">offered load</text>`,
    );
    for (const [si, s] of panel.series.entries()) {
      const d: string[] = [];
      let pen = false;
      for (const [i, v] of s.values.entries()) {
        if (v === null) {
          pen = false;
          continue;
        }
        d.push(`${pen ? "L" : "M"}${n(xOf((i + 0.5) * spec.bucketH))},${n(yOf(v))}`);
        pen = true;
      }
      out.push(
        `<path d="${d.join("")}" fill="none" stroke="${COLORS[si % COLORS.length]}" stroke-width="1.8" stroke-linejoin="round"><title>${esc(s.name)}</title></path>`,
      );
    }
  }
  out.push(`<text x="${LEFT}" y="${height - 4}" fill="#777">time of submission (virtual hours)</text>`, "</svg>");
  return out.join("\n") + "\n";
}
