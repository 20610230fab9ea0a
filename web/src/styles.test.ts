// WCAG 2.x contrast of the theme variables in styles.css, both themes:
// text colours against every background they are drawn on reach 4.5:1
// (AA, normal text), control borders and the focus ring 3:1 (AA, 1.4.11
// non-text contrast).
import { describe, expect, it } from "vitest";
import css from "./styles.css?raw";

function block(selector: string): Record<string, string> {
  const start = css.indexOf(selector);
  if (start < 0) throw new Error(`${selector} not in styles.css`);
  const body = css.slice(css.indexOf("{", start) + 1, css.indexOf("}", start));
  return Object.fromEntries([...body.matchAll(/--([\w-]+):\s*(#[0-9a-fA-F]{3,6})/g)].map((m) => [m[1], m[2]]));
}

export function luminance(hex: string): number {
  let h = hex.slice(1);
  if (h.length === 3) h = [...h].map((c) => c + c).join("");
  const [r, g, b] = [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16) / 255).map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

export function contrast(a: string, b: string): number {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

const themes = {
  light: block(':root, [data-theme="light"]'),
  dark: block('[data-theme="dark"]'),
};

// [foreground, background, minimum]
const pairs: [string, string, number][] = [
  ...["fg", "muted", "accent", "danger", "warn", "ok", "chart1", "chart2", "chart3", "chart4", "chart5"].flatMap((f): [string, string, number][] => [
    [f, "bg", 4.5],
    [f, "panel", 4.5],
  ]),
  ["fg", "add", 4.5],
  ["fg", "del", 4.5],
  ["bg", "accent", 4.5], // the selected completion item
  ["border", "bg", 3],
  ["border", "panel", 3],
  ["accent", "bg", 3], // focus ring
];

describe("theme contrast (WCAG AA)", () => {
  it("the arithmetic matches WCAG's reference values", () => {
    expect(contrast("#000000", "#ffffff")).toBeCloseTo(21, 5);
    expect(contrast("#777777", "#ffffff")).toBeCloseTo(4.48, 2);
  });
  for (const [name, vars] of Object.entries(themes))
    for (const [f, b, min] of pairs)
      it(`${name}: --${f} on --${b} ≥ ${min}:1`, () => {
        expect(vars[f], `--${f} is not defined in the ${name} theme`).toBeDefined();
        expect(vars[b], `--${b} is not defined in the ${name} theme`).toBeDefined();
        expect(contrast(vars[f], vars[b])).toBeGreaterThanOrEqual(min);
      });
});
