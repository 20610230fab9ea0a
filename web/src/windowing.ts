// Row windowing: which rows of a long table to render for a scroll
// position (the rest are spacers), so 30,000 rows cost a screenful.

export interface Window {
  start: number;
  end: number; // exclusive
  padTop: number;
  padBottom: number;
}

export function windowFor(total: number, rowHeight: number, scrollTop: number, viewport: number, overscan = 8): Window {
  if (total <= 0 || rowHeight <= 0) return { start: 0, end: 0, padTop: 0, padBottom: 0 };
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const visible = Math.ceil(Math.max(0, viewport) / rowHeight) + 1;
  const start = Math.max(0, Math.min(total, first - overscan));
  const end = Math.max(start, Math.min(total, first + visible + overscan));
  return { start, end, padTop: start * rowHeight, padBottom: (total - end) * rowHeight };
}

/** pageFor is the backend page (offset, limit) that covers a window with slack. */
export function pageFor(w: Window, pageSize = 200): { offset: number; limit: number } {
  const mid = Math.floor((w.start + w.end) / 2);
  const offset = Math.max(0, mid - Math.floor(pageSize / 2));
  return { offset: offset - (offset % 50), limit: pageSize };
}
