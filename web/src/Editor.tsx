// The YAML view and editor, loaded on demand (code-split from the main
// bundle, CodeMirror 6 included): edit with YAML highlighting, completion
// of field names from the API server's OpenAPI v3 schema of the object's
// kind (with type and description), lint (YAML syntax, unknown fields,
// wrong scalar types) marked on the lines and listed under the editor,
// review the diff, apply; a 409 Conflict is shown with a way to reload.
//
// YamlEditor is the editor alone (value/onChange) for other pages, such as
// creating an object from YAML.
import { useEffect, useRef, useState } from "react";
import { EditorState, Compartment } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { syntaxHighlighting, HighlightStyle, indentOnInput, bracketMatching } from "@codemirror/language";
import { yaml } from "@codemirror/lang-yaml";
import { autocompletion, completionKeymap, type CompletionContext, type CompletionResult } from "@codemirror/autocomplete";
import { linter, lintGutter, lintKeymap, forceLinting } from "@codemirror/lint";
import { tags as t } from "@lezer/highlight";
import * as api from "./api";
import { diffLines, changed } from "./diff";
import { lint, completeKey, completeValue, kindOf, type Diagnostic } from "./yamlschema";
import type { Schemas } from "./schema";
import { schemasFor } from "./schemaclient";

// Colours are the theme's variables, so both themes keep their contrast
// (styles.test.ts checks the variables).
const highlight = HighlightStyle.define([
  { tag: [t.definition(t.propertyName), t.propertyName], color: "var(--accent)" },
  { tag: [t.string, t.special(t.string)], color: "var(--chart3)" },
  { tag: [t.keyword, t.bool, t.number, t.null, t.atom], color: "var(--chart2)" },
  { tag: [t.lineComment, t.comment], color: "var(--muted)", fontStyle: "italic" },
  { tag: [t.labelName, t.typeName, t.meta], color: "var(--chart4)" },
]);

const theme = EditorView.theme({
  "&": { backgroundColor: "var(--bg)", color: "var(--fg)", border: "1px solid var(--line)", borderRadius: "4px", fontSize: "13px" },
  "&.cm-focused": { outline: "2px solid var(--accent)", outlineOffset: "1px" },
  ".cm-scroller": { fontFamily: "ui-monospace, monospace", lineHeight: "1.45" },
  ".cm-content": { caretColor: "var(--fg)" },
  ".cm-cursor": { borderLeftColor: "var(--fg)" },
  ".cm-gutters": { backgroundColor: "var(--panel)", color: "var(--muted)", borderRight: "1px solid var(--line)" },
  ".cm-activeLine, .cm-activeLineGutter": { backgroundColor: "rgba(127, 127, 127, 0.12)" },
  ".cm-tooltip": { backgroundColor: "var(--panel)", color: "var(--fg)", border: "1px solid var(--line)" },
  ".cm-tooltip-autocomplete ul li[aria-selected]": { backgroundColor: "var(--accent)", color: "var(--bg)" },
  ".cm-tooltip-autocomplete ul li[aria-selected] .cm-completionDetail": { color: "var(--bg)" },
  ".cm-completionDetail": { opacity: "1", color: "var(--muted)", marginLeft: "1em" },
  ".cm-completionInfo": { maxWidth: "420px", whiteSpace: "pre-wrap" },
  ".cm-diagnostic": { color: "var(--fg)" },
  ".cm-diagnostic-error": { borderLeftColor: "var(--danger)" },
});

export interface YamlEditorProps {
  value: string;
  onChange: (v: string) => void;
  readOnly?: boolean;
  /** accessible name of the text box (default "YAML") */
  label?: string;
  /** called with the current diagnostics after each lint */
  onProblems?: (d: Diagnostic[]) => void;
}

// A problem as listed under the editor.
interface Problem extends Diagnostic {
  line: number;
}

export function YamlEditor({ value, onChange, readOnly = false, label = "YAML", onProblems }: YamlEditorProps) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const ro = useRef(new Compartment());
  const cb = useRef({ onChange, onProblems });
  cb.current = { onChange, onProblems };
  const schemas = useRef<{ apiVersion: string; s: Schemas | null; pending: boolean }>({ apiVersion: "", s: null, pending: false });
  const [schemaNote, setSchemaNote] = useState("");
  const [problems, setProblems] = useState<Problem[]>([]);

  useEffect(() => {
    // The schema of the document's apiVersion, loaded when it changes.
    const want = (text: string, v: EditorView) => {
      const { apiVersion, kind } = kindOf(text);
      const cur = schemas.current;
      if (!apiVersion || apiVersion === cur.apiVersion) return;
      schemas.current = { apiVersion, s: null, pending: true };
      setSchemaNote(`Loading the schema of ${apiVersion}…`);
      schemasFor(apiVersion).then(
        (s) => {
          if (schemas.current.apiVersion !== apiVersion) return;
          schemas.current = { apiVersion, s, pending: false };
          setSchemaNote(kind && s.forKind(apiVersion, kind) ? `Checked against the API server's schema of ${kind} (${apiVersion}).` : `No schema for ${kind || "this kind"} in ${apiVersion}: only YAML syntax is checked.`);
          forceLinting(v);
        },
        (e: Error) => {
          if (schemas.current.apiVersion !== apiVersion) return;
          schemas.current = { apiVersion, s: null, pending: false };
          setSchemaNote(`No schema (${e.message}): only YAML syntax is checked.`);
          forceLinting(v);
        },
      );
    };
    const source = (v: EditorView) => {
      const text = v.state.doc.toString();
      want(text, v);
      const ds = lint(text, schemas.current.s);
      setProblems(ds.map((d) => ({ ...d, line: v.state.doc.lineAt(d.from).number })));
      cb.current.onProblems?.(ds);
      return ds.map((d) => ({ ...d, source: d.message.startsWith("YAML syntax") ? "yaml" : "schema" }));
    };
    const complete = (ctx: CompletionContext): CompletionResult | null => {
      const word = ctx.matchBefore(/[\w./-]*/);
      const doc = ctx.state.doc.toString();
      const val = completeValue(doc, ctx.pos, schemas.current.s);
      if (val && val.values.length > 0 && (ctx.explicit || /:\s*$/.test(doc.slice(0, ctx.pos)) || (word && word.from < word.to)))
        return { from: val.from, validFor: /^[\w.-]*$/, options: val.values.map((v) => ({ label: v, type: "enum" })) };
      if (!ctx.explicit && (!word || word.from === word.to)) return null;
      const r = completeKey(ctx.state.doc.toString(), ctx.pos, schemas.current.s);
      if (!r || r.fields.length === 0) return null;
      return {
        from: r.from,
        validFor: /^[\w./-]*$/,
        options: r.fields.map((f) => ({ label: f.name, type: "property", detail: f.required ? `${f.type}, required` : f.type, info: f.description || undefined, apply: `${f.name}: ` })),
      };
    };
    const v = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: value,
        extensions: [
          lineNumbers(),
          highlightActiveLineGutter(),
          highlightActiveLine(),
          drawSelection(),
          history(),
          indentOnInput(),
          bracketMatching(),
          yaml(),
          syntaxHighlighting(highlight),
          autocompletion({ override: [complete] }),
          linter(source, { delay: 300 }),
          lintGutter(),
          keymap.of([...completionKeymap, ...lintKeymap, ...defaultKeymap, ...historyKeymap, indentWithTab]),
          theme,
          ro.current.of([EditorState.readOnly.of(readOnly)]),
          // tabindex: the scroller's content is focusable for axe (and Tab
          // reaches it in every browser); Escape then Tab leaves it.
          EditorView.contentAttributes.of({ "aria-label": label, "aria-multiline": "true", role: "textbox", tabindex: "0", "aria-describedby": "yaml-keys" }),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) cb.current.onChange(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    // For tests and scripts: the whole text, which the DOM holds only in
    // part (CodeMirror renders the visible lines).
    Object.defineProperty(host.current!, "yamlValue", {
      configurable: true,
      get: () => v.state.doc.toString(),
      set: (s: string) => v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: s } }),
    });
    return () => {
      v.destroy();
      view.current = null;
    };
  }, []); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value) v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value } });
  }, [value]);
  useEffect(() => {
    view.current?.dispatch({ effects: ro.current.reconfigure([EditorState.readOnly.of(readOnly)]) });
  }, [readOnly]);

  const jump = (p: Problem) => {
    const v = view.current;
    if (!v) return;
    v.dispatch({ selection: { anchor: p.from }, scrollIntoView: true });
    v.focus();
  };
  return (
    <div className="yamleditor">
      <div ref={host} data-testid="yaml-editor" className="cmhost" />
      <p className="note hint" id="yaml-keys">
        Ctrl+Space completes field names; Tab indents, Escape then Tab leaves the editor.
      </p>
      <div className="problems" aria-live="polite">
        <p className="note" data-testid="schema-note">
          {schemaNote}
        </p>
        {problems.length > 0 && (
          <>
            <p className="error" data-testid="problem-count">
              {problems.length === 1 ? "1 problem" : `${problems.length} problems`}
            </p>
            <ul aria-label="problems" data-testid="problems">
              {problems.map((p, i) => (
                <li key={i}>
                  <button className="linklike" onClick={() => jump(p)}>
                    Line {p.line}
                  </button>
                  : {p.message}
                </li>
              ))}
            </ul>
          </>
        )}
      </div>
    </div>
  );
}

export default function Editor({ refObj, canEdit }: { refObj: api.Ref; canEdit: boolean }) {
  const [orig, setOrig] = useState("");
  const [text, setText] = useState("");
  const [loaded, setLoaded] = useState(false);
  const [review, setReview] = useState(false);
  const [error, setError] = useState<{ code: number; message: string } | null>(null);
  const [note, setNote] = useState("");
  const [problems, setProblems] = useState<Diagnostic[]>([]);
  const load = () =>
    api.getYAML(refObj).then(
      (y) => {
        setOrig(y);
        setText(y);
        setLoaded(true);
        setReview(false);
        setError(null);
      },
      (e) => setError({ code: e.code, message: e.message }),
    );
  useEffect(() => {
    load();
  }, []); // eslint-disable-line react-hooks/exhaustive-deps
  const d = diffLines(orig, text);
  const syntax = problems.some((p) => p.message.startsWith("YAML syntax"));
  return (
    <div className="editor">
      {error && (
        <div role="alert" className="error">
          {error.code === 409 ? (
            <>
              Conflict: the object changed since you loaded it ({error.message}).{" "}
              <button onClick={load}>Reload the current version</button>
            </>
          ) : (
            error.message
          )}
        </div>
      )}
      {note && <p className="note">{note}</p>}
      {!loaded ? (
        !error && <p>Loading…</p>
      ) : !review ? (
        <>
          <YamlEditor value={text} onChange={setText} readOnly={!canEdit} onProblems={setProblems} />
          {canEdit && (
            <button disabled={!changed(d)} onClick={() => setReview(true)}>
              Review changes
            </button>
          )}
        </>
      ) : (
        <>
          {problems.length > 0 && (
            <p className="error" role="status">
              {syntax ? "The YAML does not parse: fix it before applying." : `${problems.length === 1 ? "1 problem" : `${problems.length} problems`} against the schema: the API server will likely refuse this.`}
            </p>
          )}
          {/* Focusable so the keyboard can scroll a long diff (WCAG 2.1.1). */}
          <pre className="diff" role="region" aria-label="diff" tabIndex={0}>
            {d.map((l, i) => (
              <div key={i} className={l.op === "+" ? "add" : l.op === "-" ? "del" : ""}>
                {l.op} {l.text}
              </div>
            ))}
          </pre>
          <button onClick={() => setReview(false)}>Back to editing</button>
          <button
            className="primary"
            disabled={syntax}
            onClick={async () => {
              try {
                const r = await api.apply(text, refObj.namespace);
                setNote(`Applied (${r.action}).`);
                await load();
              } catch (e) {
                const err = e as api.ApiError;
                setError({ code: err.code, message: err.message });
                setReview(false);
              }
            }}
          >
            Apply
          </button>
        </>
      )}
    </div>
  );
}
