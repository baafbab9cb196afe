// A CSV output plotted with uPlot: first column x, every other numeric column a series.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { parseCsv } from '../results.js';

const COLORS = ['#2f6fde', '#e0633a', '#1e9e6a', '#a04ad6', '#c9a008', '#d43f7a'];

export function CsvPlot({ name, text, theme }) {
  const box = useRef();
  const table = parseCsv(text);
  useEffect(() => {
    if (!table || !box.current) return undefined;
    const css = getComputedStyle(document.documentElement);
    const fg = css.getPropertyValue('--fg').trim() || '#222';
    const grid = css.getPropertyValue('--grid').trim() || '#ddd';
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const plot = new uPlot({
      title: name,
      width: Math.max(300, box.current.clientWidth - 8),
      height: 280,
      scales: { x: { time: false } },
      axes: [{ ...axis, label: table.labels[0] }, { ...axis }],
      series: [
        { label: table.labels[0] },
        ...table.labels.slice(1).map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2 })),
      ],
    }, table.columns, box.current);
    return () => plot.destroy();
  }, [text, theme]);
  if (!table) return <p class="muted">{name}: no numeric columns to plot.</p>;
  return <div class="plot" ref={box} data-testid="csv-plot" data-name={name} />;
}
