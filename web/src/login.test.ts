import { afterEach, describe, expect, it, vi } from "vitest";
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import * as api from "./api";
import { Login } from "./Login";

afterEach(() => vi.unstubAllGlobals());

const render = (cert: api.CertificateInfo | null) => renderToStaticMarkup(createElement(Login, { onLogin: () => {}, cert }));

describe("login page", () => {
  it("offers the client certificate only when the server verified one", () => {
    const withCert = render({ enabled: true, user: "alice", groups: ["devs", "system:authenticated"], notAfter: "2030-01-01T00:00:00Z" });
    expect(withCert).toContain("Use client certificate");
    expect(withCert).toContain("<strong>alice</strong>");
    expect(withCert).toContain("devs");
    expect(withCert).toContain("Bearer token");

    for (const cert of [null, { enabled: false }, { enabled: true }]) {
      const html = render(cert);
      expect(html).not.toContain("Use client certificate");
      expect(html).toContain("Bearer token");
    }
  });

  it("says why a presented certificate cannot log in", () => {
    const html = render({ enabled: true, error: 'the client certificate "alice" expired at 2026-01-01T00:00:00Z' });
    expect(html).not.toContain("Use client certificate");
    expect(html).toContain("Client certificate not usable: the client certificate &quot;alice&quot; expired");
  });
});

describe("certificate API", () => {
  it("asks for the connection's certificate and logs in with method certificate", async () => {
    const calls: { method: string; url: string; body?: string; headers: Record<string, string> }[] = [];
    const answers = [
      { enabled: true, user: "alice", groups: ["devs"] },
      { user: "alice", groups: ["devs"], csrf: "c1" },
      null,
    ];
    vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
      calls.push({ method: init.method ?? "GET", url, body: init.body as string | undefined, headers: init.headers as Record<string, string> });
      const a = answers.shift();
      return a === null ? new Response(null, { status: 204 }) : new Response(JSON.stringify(a), { status: 200, headers: { "Content-Type": "application/json" } });
    });
    expect(await api.certificateInfo()).toEqual({ enabled: true, user: "alice", groups: ["devs"] });
    expect(await api.loginWithCertificate()).toEqual({ user: "alice", groups: ["devs"], csrf: "c1" });
    await api.logout();
    expect(calls.map((c) => `${c.method} ${c.url}`)).toEqual(["GET /api/login/certificate", "POST /api/login", "POST /api/logout"]);
    expect(JSON.parse(calls[1].body!)).toEqual({ method: "certificate" });
    // The session's CSRF token is used afterwards.
    expect(calls[2].headers["X-CSRF-Token"]).toBe("c1");
  });

  it("passes the server's refusal on", async () => {
    vi.stubGlobal("window", new EventTarget());
    vi.stubGlobal("fetch", async () =>
      new Response(JSON.stringify({ code: 401, message: "certificate login refused: the client certificate \"alice\" is not signed by this cluster's client CA" }), {
        status: 401,
        headers: { "Content-Type": "application/json" },
      }),
    );
    await expect(api.loginWithCertificate()).rejects.toThrow("not signed by this cluster's client CA");
  });
});
