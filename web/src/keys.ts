// Keyboard navigation: the pure key-sequence logic (App.tsx listens on the
// window and acts on what feed returns).
//
//   / or Ctrl/Cmd-K  search palette        ?  this help
//   g o  overview   g p  pods   g d  deployments   g s  services
//   g n  nodes      g l  log search
//   j / k  move the row focus in a table, Enter opens the focused row
//   Escape closes the palette or the help
//
// Keys are ignored while typing (input, textarea, select, contenteditable:
// the YAML editors) except Escape and Ctrl/Cmd-K; other keys with Ctrl,
// Cmd or Alt are left to the browser.

export type GoTarget = "overview" | "pods" | "deployments" | "services" | "nodes" | "logs";

export type Action =
  | { type: "search" }
  | { type: "help" }
  | { type: "escape" }
  | { type: "go"; to: GoTarget }
  | { type: "down" }
  | { type: "up" }
  | { type: "open" };

export interface KeyInput {
  key: string;
  ctrlKey?: boolean;
  metaKey?: boolean;
  altKey?: boolean;
  /** target: where the key went (targetKind of the event's target). */
  target?: TargetKind;
  /** time in ms (for the g prefix's timeout). */
  time: number;
}

/** typing: a text field or editor; control: a link or button (Enter is theirs); none: anything else. */
export type TargetKind = "typing" | "control" | "none";

export const GO_KEYS: Record<string, GoTarget> = { o: "overview", p: "pods", d: "deployments", s: "services", n: "nodes", l: "logs" };

/** G_TIMEOUT is how long "g" waits for its second key. */
export const G_TIMEOUT = 1500;

export class KeySequence {
  private g = -Infinity;

  feed(e: KeyInput): Action | null {
    const target = e.target ?? "none";
    if (e.key === "Escape") {
      this.g = -Infinity;
      return { type: "escape" };
    }
    if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === "k") {
      this.g = -Infinity;
      return { type: "search" };
    }
    if (e.ctrlKey || e.metaKey || e.altKey || target === "typing") {
      this.g = -Infinity;
      return null;
    }
    if (e.key === "Shift") return null; // "?" is Shift+/ on most layouts
    if (e.time - this.g <= G_TIMEOUT) {
      this.g = -Infinity;
      const to = GO_KEYS[e.key];
      return to ? { type: "go", to } : null;
    }
    switch (e.key) {
      case "g":
        this.g = e.time;
        return null;
      case "/":
        return { type: "search" };
      case "?":
        return { type: "help" };
      case "j":
        return { type: "down" };
      case "k":
        return { type: "up" };
      case "Enter":
        return target === "control" ? null : { type: "open" };
    }
    return null;
  }
}

/** targetKind classifies an event target for KeySequence. */
export function targetKind(el: EventTarget | null): TargetKind {
  if (!el || typeof (el as Element).tagName !== "string") return "none";
  const e = el as HTMLElement;
  const tag = e.tagName.toLowerCase();
  if (tag === "textarea" || tag === "select" || e.isContentEditable || e.getAttribute?.("role") === "textbox") return "typing";
  if (tag === "input") {
    const t = ((e as HTMLInputElement).type || "text").toLowerCase();
    return ["button", "submit", "reset", "checkbox", "radio"].includes(t) ? "control" : "typing";
  }
  if (tag === "a" || tag === "button" || tag === "summary" || e.getAttribute?.("role") === "button" || e.getAttribute?.("role") === "option") return "control";
  return "none";
}

/** moveFocus moves a table's row focus (-1: none yet) by delta within total rows. */
export function moveFocus(cur: number, delta: number, total: number): number {
  if (total <= 0) return -1;
  if (cur < 0) return delta > 0 ? 0 : total - 1;
  return Math.min(total - 1, Math.max(0, cur + delta));
}

/** scrollFor returns the scrollTop that shows row i (height h) in a box of height view scrolled to top (header: rows start below it). */
export function scrollFor(i: number, h: number, top: number, view: number, header = 0): number {
  const y = i * h;
  if (y < top) return y;
  if (y + h + header > top + view) return y + h + header - view;
  return top;
}

export const KEY_HELP: [string, string][] = [
  ["/  or  Ctrl-K", "search objects by name"],
  ["g o", "overview"],
  ["g p", "pods"],
  ["g d", "deployments"],
  ["g s", "services"],
  ["g n", "nodes"],
  ["g l", "log search"],
  ["j / k", "next / previous row in a table"],
  ["Enter", "open the focused row"],
  ["?", "this help"],
  ["Escape", "close the search or this help"],
];

/** ROWS_EVENT carries "down", "up" or "open" to the table shown (ListView). */
export const ROWS_EVENT = "skiff:rows";
