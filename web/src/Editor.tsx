// The YAML view and editor, loaded on demand (code-split from the main
// bundle): edit, review the diff, apply; a 409 Conflict is shown with a
// way to reload.
import { useEffect, useState } from "react";
import * as api from "./api";
import { diffLines, changed } from "./diff";

export default function Editor({ refObj, canEdit }: { refObj: api.Ref; canEdit: boolean }) {
  const [orig, setOrig] = useState("");
  const [text, setText] = useState("");
  const [review, setReview] = useState(false);
  const [error, setError] = useState<{ code: number; message: string } | null>(null);
  const [note, setNote] = useState("");
  const load = () =>
    api.getYAML(refObj).then(
      (y) => {
        setOrig(y);
        setText(y);
        setReview(false);
        setError(null);
      },
      (e) => setError({ code: e.code, message: e.message }),
    );
  useEffect(() => {
    load();
  }, []); // eslint-disable-line react-hooks/exhaustive-deps
  const d = diffLines(orig, text);
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
      {!review ? (
        <>
          <textarea aria-label="YAML" spellCheck={false} value={text} readOnly={!canEdit} onChange={(e) => setText(e.target.value)} rows={30} />
          {canEdit && (
            <button disabled={!changed(d)} onClick={() => setReview(true)}>
              Review changes
            </button>
          )}
        </>
      ) : (
        <>
          <pre className="diff" aria-label="diff">
            {d.map((l, i) => (
              <div key={i} className={l.op === "+" ? "add" : l.op === "-" ? "del" : ""}>
                {l.op} {l.text}
              </div>
            ))}
          </pre>
          <button onClick={() => setReview(false)}>Back to editing</button>
          <button
            className="primary"
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
