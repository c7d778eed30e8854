// Report of bench/build-sizes.sh: medians per (tool, size, case) as a Markdown
// table with ratios, a check that weft's digests agree for 1 and N gzip threads,
// and an SVG chart of cold build time against dependency size.
// Usage: node dist/bench/build-sizes-report.js <csv> [--svg <file>]   (default: the csv's name with .svg)
import { readFileSync, writeFileSync } from 'node:fs';

interface Row {
  tool: string;
  size: number;
  kase: string;
  ms: number;
  digest: string;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export function parseCsv(text: string): Row[] {
  return text
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => {
      const [tool, size, kase, ms, digest] = line.split(',');
      return { tool, size: Number(size), kase, ms: Number(ms), digest: digest ?? '' };
    });
}

/** Input size in MB as the chart and table show it: the example's own 3.5 MB of jars plus the extra. */
const inputMb = (size: number): number => size + 3.5;

export function markdown(rows: Row[]): string {
  const sizes = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
  const med = (tool: string, size: number, kase: string): number | undefined => {
    const xs = rows.filter((r) => r.tool === tool && r.size === size && r.kase === kase).map((r) => r.ms);
    return xs.length ? median(xs) : undefined;
  };
  const fmt = (n: number | undefined): string => (n === undefined ? 'n/a' : String(Math.round(n)));
  const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? (a / b).toFixed(2) : 'n/a');
  const lines = [
    '| deps MB | case | weft ms | weft 1 thread ms | buildah ms (gzip) | Jib ms (jib-core) | weft / buildah | weft / Jib | runs |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const size of sizes) {
    for (const kase of ['cold', 'one-class']) {
      const w = med('weft', size, kase);
      const runs = rows.filter((r) => r.tool === 'weft' && r.size === size && r.kase === kase).length;
      const jib = med('jib', size, kase);
      lines.push(
        `| ${inputMb(size)} | ${kase} | ${fmt(w)} | ${fmt(med('weft-1-thread', size, kase))} | ${fmt(med('buildah', size, kase))} | ${fmt(jib)} | ${ratio(w, med('buildah', size, kase))} | ${ratio(w, jib)} | ${runs} |`,
      );
    }
  }
  // Reproducibility whatever the thread count: every weft run of a (size, case) gives one digest.
  lines.push('');
  for (const size of sizes) {
    for (const kase of ['cold', 'one-class']) {
      const digests = new Set(rows.filter((r) => r.tool.startsWith('weft') && r.size === size && r.kase === kase).map((r) => r.digest));
      const state = digests.size === 1 ? `one digest for 1 and N threads (${[...digests][0].slice(0, 19)}…)` : `DIFFERENT DIGESTS: ${[...digests].join(' ')}`;
      lines.push(`- ${inputMb(size)} MB ${kase}: ${state}`);
    }
  }
  return lines.join('\n');
}

/** A line chart, cold build time (s) against input MB, one line per tool; plain SVG, no library. */
export function svgChart(rows: Row[]): string {
  const tools = [
    { tool: 'weft', colour: '#1f77b4' },
    { tool: 'weft-1-thread', colour: '#7fb3e0' },
    { tool: 'buildah', colour: '#d62728' },
    { tool: 'jib', colour: '#2ca02c' },
  ];
  const sizes = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
  const series = tools
    .map(({ tool, colour }) => ({
      tool,
      colour,
      points: sizes.flatMap((size) => {
        const xs = rows.filter((r) => r.tool === tool && r.size === size && r.kase === 'cold').map((r) => r.ms);
        return xs.length ? [{ x: inputMb(size), y: median(xs) / 1000 }] : [];
      }),
    }))
    .filter((s) => s.points.length > 0);
  const W = 640, H = 400, left = 60, right = 150, top = 30, bottom = 50;
  const maxX = Math.max(...series.flatMap((s) => s.points.map((p) => p.x)), 1);
  const maxY = Math.max(...series.flatMap((s) => s.points.map((p) => p.y)), 1) * 1.1;
  const px = (x: number): number => left + (x / maxX) * (W - left - right);
  const py = (y: number): number => H - bottom - (y / maxY) * (H - top - bottom);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">Cold build time against dependency size (median)</text>`,
    `<line x1="${left}" y1="${H - bottom}" x2="${W - right}" y2="${H - bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${H - bottom}" stroke="black"/>`,
    `<text x="${(left + W - right) / 2}" y="${H - 12}" text-anchor="middle">dependency jars, MB</text>`,
    `<text x="16" y="${(top + H - bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(top + H - bottom) / 2})">seconds</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const y = (maxY * i) / 5;
    out.push(`<line x1="${left - 4}" y1="${py(y)}" x2="${W - right}" y2="${py(y)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(1)}</text>`);
  }
  for (const size of sizes) out.push(`<text x="${px(inputMb(size))}" y="${H - bottom + 16}" text-anchor="middle">${inputMb(size)}</text>`);
  series.forEach((s, i) => {
    out.push(`<polyline fill="none" stroke="${s.colour}" stroke-width="2" points="${s.points.map((p) => `${px(p.x)},${py(p.y)}`).join(' ')}"/>`);
    for (const p of s.points) out.push(`<circle cx="${px(p.x)}" cy="${py(p.y)}" r="3" fill="${s.colour}"/>`);
    out.push(`<rect x="${W - right + 12}" y="${top + i * 20}" width="12" height="3" fill="${s.colour}"/>`);
    out.push(`<text x="${W - right + 30}" y="${top + i * 20 + 5}">${s.tool}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

if (process.argv[1]?.endsWith('build-sizes-report.js')) {
  const [csvPath, flag, svgArg] = process.argv.slice(2);
  if (!csvPath) {
    console.error('usage: node dist/bench/build-sizes-report.js <csv> [--svg <file>]');
    process.exit(2);
  }
  const rows = parseCsv(readFileSync(csvPath, 'utf8'));
  const svgPath = flag === '--svg' && svgArg ? svgArg : csvPath.replace(/\.csv$/, '.svg');
  writeFileSync(svgPath, svgChart(rows));
  console.log(markdown(rows));
  console.log(`\nchart: ${svgPath}`);
}
