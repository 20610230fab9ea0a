import { useState } from "react";
import * as api from "./api";

// Login offers a bearer token and, when the backend reports that this
// connection presented a verified client certificate, "Use client
// certificate" (logging in as the certificate's user).
export function Login({ onLogin, notice, cert }: { onLogin: (s: api.Session) => void; notice?: string; cert?: api.CertificateInfo | null }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const attempt = async (f: () => Promise<api.Session>) => {
    setBusy(true);
    setError("");
    try {
      onLogin(await f());
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="login">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void attempt(() => api.login(token));
        }}
      >
        <h1>Skiff</h1>
        {notice && (
          <p role="status" className="note">
            {notice}
          </p>
        )}
        {cert?.user && (
          <>
            <button type="button" disabled={busy} onClick={() => void attempt(api.loginWithCertificate)}>
              Use client certificate
            </button>
            <p className="hint">
              Log in as <strong>{cert.user}</strong>
              {cert.groups?.length ? ` (groups ${cert.groups.join(", ")})` : ""}, from the certificate this browser presented
              {cert.notAfter ? `; the session ends when it expires (${new Date(cert.notAfter).toLocaleString()})` : ""}.
            </p>
            <p className="note">or</p>
          </>
        )}
        {cert?.error && (
          <p role="status" className="note">
            Client certificate not usable: {cert.error}
          </p>
        )}
        <label htmlFor="token">Bearer token</label>
        <textarea id="token" name="token" rows={4} value={token} onChange={(e) => setToken(e.target.value)} autoFocus={!cert?.user} />
        <button type="submit" disabled={busy || !token.trim()}>
          Log in
        </button>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <p className="hint">The token is checked by the API server and kept on the dashboard server, never in this browser.</p>
      </form>
    </main>
  );
}
