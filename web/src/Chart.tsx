// A time-series chart (uPlot), loaded as its own chunk so the main bundle
// stays small. Colours come from the theme's CSS variables and are read
// again when the theme changes; the chart's text alternative is given by
// the caller (figure aria-label) because a canvas says nothing to a
// screen reader.
import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { ChartData } from "./metrics";

export interface ChartProps {
  title: string;
  description: string;
  labels: string[];
  data: ChartData;
  format: (v: number) => string;
  height?: number;
}

const palette = ["--chart1", "--chart2", "--chart3", "--chart4", "--chart5"];

function css(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

function options(p: ChartProps, width: number): uPlot.Options {
  const fg = css("--muted");
  const grid = css("--line");
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  return {
    width,
    height: p.height ?? 160,
    legend: { show: p.labels.length > 1 },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { ...axis },
      { ...axis, size: 70, values: (_u, vals) => vals.map((v) => p.format(v)) },
    ],
    series: [
      {},
      ...p.labels.map((label, i) => ({
        label,
        stroke: css(palette[i % palette.length]),
        width: i === 0 ? 2 : 1.5,
        spanGaps: false,
        value: (_u: uPlot, v: number | null) => (v == null ? "—" : p.format(v)),
      })),
    ],
  };
}

export default function Chart(p: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const props = useRef(p);
  props.current = p;
  const shape = p.labels.join("\u0000");

  // (Re)build when the lines change or the theme switches.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const build = () => {
      plot.current?.destroy();
      plot.current = new uPlot(options(props.current, el.clientWidth || 400), props.current.data as uPlot.AlignedData, el);
    };
    build();
    const ro = new ResizeObserver(() => plot.current?.setSize({ width: el.clientWidth || 400, height: props.current.height ?? 160 }));
    ro.observe(el);
    const mo = new MutationObserver(build);
    mo.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    return () => {
      ro.disconnect();
      mo.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [shape]);

  // New points: only the data changes.
  useEffect(() => {
    plot.current?.setData(p.data as uPlot.AlignedData);
  }, [p.data]);

  const points = p.data.slice(1).reduce((n, col) => n + col.filter((v) => v != null).length, 0);
  return (
    <figure className="chart" role="img" aria-label={p.description} data-points={points}>
      <figcaption>{p.title}</figcaption>
      <div ref={box} aria-hidden="true" />
    </figure>
  );
}
