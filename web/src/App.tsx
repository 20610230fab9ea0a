import { lazy, Suspense, useEffect, useMemo, useRef, useState } from "react";
import * as api from "./api";
import { Live, LOGOUT } from "./live";
import { useHash, useLive } from "./hooks";
import { parseRoute, listHref } from "./route";
import { Overview } from "./Overview";
import { ListView } from "./ListView";
import { ObjectView } from "./ObjectView";
import { Federation } from "./Federation";
import { FED_GROUP, FED_VERSION } from "./federation";
import { Login } from "./Login";
import { Palette, Help } from "./Shortcuts";
import { Create } from "./Create";
import { mayCreate } from "./create";
import { KeySequence, ROWS_EVENT, targetKind, type GoTarget } from "./keys";
import { rememberKind } from "./search";

const LogSearch = lazy(() => import("./LogSearch"));

export function App() {
  const [sess, setSess] = useState<api.Session | null>(null);
  const [notice, setNotice] = useState("");
  const [checked, setChecked] = useState(false);
  // cert is this connection's client certificate, asked for whenever the
  // login page shows.
  const [cert, setCert] = useState<api.CertificateInfo | null>(null);
  const [theme, setTheme] = useState(() => localStorage.getItem("skiff-theme") ?? "dark");
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("skiff-theme", theme);
  }, [theme]);
  useEffect(() => {
    api
      .session()
      .then(setSess)
      .catch(() => setSess(null))
      .finally(() => setChecked(true));
    // A 401 anywhere, or the backend revoking the session, ends it here.
    const out = (e: Event) => {
      const why = e instanceof CustomEvent && typeof e.detail === "string" ? e.detail : "";
      setNotice(why ? `Logged out: ${why}` : "");
      setSess(null);
    };
    window.addEventListener(LOGOUT, out);
    return () => window.removeEventListener(LOGOUT, out);
  }, []);
  useEffect(() => {
    if (!checked || sess) return;
    let live = true;
    api
      .certificateInfo()
      .then((c) => live && setCert(c))
      .catch(() => live && setCert(null));
    return () => {
      live = false;
    };
  }, [checked, sess]);
  if (!checked) return null;
  if (!sess)
    return (
      <Login
        notice={notice}
        cert={cert}
        onLogin={(s) => {
          setNotice("");
          setSess(s);
        }}
      />
    );
  return <Shell sess={sess} theme={theme} setTheme={setTheme} onLogout={() => setSess(null)} />;
}

const favourites = ["pods", "deployments", "services", "replicasets", "statefulsets", "daemonsets", "jobs", "configmaps", "secrets", "events", "nodes", "namespaces"];

const CLUSTER_KEY = "skiff-cluster";
const KINDS_KEY = "skiff-search-kinds";

// goHref is where a "g x" key sequence goes (the namespace kept).
function goHref(to: GoTarget, ns: string): string {
  switch (to) {
    case "overview":
      return `#/overview?ns=${encodeURIComponent(ns)}`;
    case "logs":
      return "#/logs";
    case "deployments":
      return listHref("apps", "v1", "deployments", ns);
    default:
      return listHref("", "v1", to, ns);
  }
}

function Shell({ sess, theme, setTheme, onLogout }: { sess: api.Session; theme: string; setTheme: (t: string) => void; onLogout: () => void }) {
  // hostLive always reads the host (member list, federation page); live
  // reads the current cluster (the host or a member).
  const [hostLive, setHostLive] = useState<Live | null>(null);
  const [memberLive, setMemberLive] = useState<Live | null>(null);
  const [status, setStatus] = useState("connecting");
  const [cluster, setCluster] = useState("");
  const [hostResources, setHostResources] = useState<api.Resource[] | null>(null);
  const [resources, setResources] = useState<api.Resource[]>([]);
  const [rules, setRules] = useState<api.Rule[]>([]);
  const [msg, setMsg] = useState("");
  const [switchError, setSwitchError] = useState("");
  const hash = useHash();
  const route = parseRoute(hash);
  const ns = route.ns;
  const live = cluster ? memberLive : hostLive;
  const [palette, setPalette] = useState(false);
  const [help, setHelp] = useState(false);
  // Custom kinds opened in this tab are searched too (search.ts).
  const [searchKinds, setSearchKinds] = useState<string[]>(() => {
    try {
      const k = JSON.parse(sessionStorage.getItem(KINDS_KEY) ?? "[]");
      return Array.isArray(k) ? k.filter((x) => typeof x === "string") : [];
    } catch {
      return [];
    }
  });
  useEffect(() => {
    setSearchKinds((k) => {
      const next = rememberKind(k, route);
      if (next !== k) sessionStorage.setItem(KINDS_KEY, JSON.stringify(next));
      return next;
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [hash]);
  // Keyboard navigation (keys.ts): one sequence per tab.
  const keys = useRef(new KeySequence());
  const nsRef = useRef(ns);
  nsRef.current = ns;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const a = keys.current.feed({ key: e.key, ctrlKey: e.ctrlKey, metaKey: e.metaKey, altKey: e.altKey, target: targetKind(e.target), time: e.timeStamp });
      if (!a) return;
      switch (a.type) {
        case "search":
          e.preventDefault();
          setHelp(false);
          setPalette(true);
          break;
        case "help":
          e.preventDefault();
          setPalette(false);
          setHelp((h) => !h);
          break;
        case "escape":
          setPalette(false);
          setHelp(false);
          break;
        case "go":
          setPalette(false);
          setHelp(false);
          location.hash = goHref(a.to, nsRef.current);
          break;
        default:
          window.dispatchEvent(new CustomEvent(ROWS_EVENT, { detail: a.type }));
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  useEffect(() => {
    const l = new Live();
    l.onStatus = setStatus;
    setHostLive(l);
    // The host's discovery first, then the member this tab used before a reload.
    api.discovery().then(
      (rs) => {
        setHostResources(rs);
        setResources(rs);
        const saved = sessionStorage.getItem(CLUSTER_KEY);
        if (saved) switchTo(saved);
      },
      (e) => setMsg(e.message),
    );
    return () => l.close();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  useEffect(() => {
    if (!cluster) {
      setMemberLive(null);
      return;
    }
    const l = new Live(undefined, cluster);
    l.onStatus = setStatus;
    setMemberLive(l);
    return () => l.close();
  }, [cluster]);
  useEffect(() => {
    if (hostResources === null) return;
    if (!cluster) setResources(hostResources);
    else api.discovery().then(setResources, (e) => setMsg(e.message));
  }, [cluster, hostResources]);
  useEffect(() => {
    api.rules(ns || "default").then((r) => setRules(r.resourceRules ?? []), () => setRules([]));
  }, [ns, cluster]);

  const switchTo = async (name: string): Promise<boolean> => {
    setSwitchError("");
    try {
      const r = await api.switchCluster(name);
      setMsg("");
      setCluster(r.cluster);
      if (r.cluster) sessionStorage.setItem(CLUSTER_KEY, r.cluster);
      else sessionStorage.removeItem(CLUSTER_KEY);
      return true;
    } catch (e) {
      setSwitchError(`Cannot switch to ${name ? `member cluster ${name}` : "the host"}: ${(e as Error).message}`);
      if (sessionStorage.getItem(CLUSTER_KEY) === name) sessionStorage.removeItem(CLUSTER_KEY);
      return false;
    }
  };
  const fedEnabled = (hostResources ?? []).some((r) => r.group === FED_GROUP && r.resource === "memberclusters");
  const members = useLive(fedEnabled ? hostLive : null, { group: FED_GROUP, version: FED_VERSION, resource: "memberclusters", namespace: "", page: { offset: 0, limit: 500 } });

  const namespaces = useLive(live, { group: "", version: "v1", resource: "namespaces", namespace: "", page: { offset: 0, limit: 500 } });
  const sorted = useMemo(() => {
    const fav = resources.filter((r) => favourites.includes(r.resource));
    fav.sort((a, b) => favourites.indexOf(a.resource) - favourites.indexOf(b.resource));
    const rest = resources.filter((r) => !favourites.includes(r.resource) && (r.verbs ?? []).includes("list"));
    rest.sort((a, b) => a.kind.localeCompare(b.kind));
    return [...fav, ...rest];
  }, [resources]);

  const setNs = (n: string) => {
    const h = location.hash.includes("?") ? location.hash.replace(/([?&])ns=[^&]*/, `$1ns=${encodeURIComponent(n)}`) : `${location.hash || "#/overview"}?ns=${n}`;
    location.hash = h.includes("ns=") ? h : `${h}&ns=${encodeURIComponent(n)}`;
  };

  return (
    <div className="shell">
      <header>
        <h1 className="brand">
          <a href={`#/overview?ns=${ns}`}>Skiff</a>
        </h1>
        <label>
          Namespace{" "}
          <select aria-label="namespace" value={ns} onChange={(e) => setNs(e.target.value)}>
            <option value="">(all namespaces)</option>
            {!namespaces.rows.some((n) => n.metadata.name === ns) && ns && <option value={ns}>{ns}</option>}
            {namespaces.rows.map((n) => (
              <option key={n.metadata.name}>{n.metadata.name}</option>
            ))}
          </select>
        </label>
        {fedEnabled && (
          <label>
            Cluster{" "}
            <select aria-label="cluster" value={cluster} onChange={(e) => switchTo(e.target.value)}>
              <option value="">host</option>
              {!members.rows.some((m) => m.metadata.name === cluster) && cluster && <option value={cluster}>{cluster}</option>}
              {members.rows.map((m) => (
                <option key={m.metadata.name} value={m.metadata.name}>
                  {m.metadata.name}
                </option>
              ))}
            </select>
          </label>
        )}
        <span className={`conn ${status}`} title="live connection">
          {status === "open" ? "● live" : status}
        </span>
        <span className="spacer" />
        <button onClick={() => setPalette(true)} aria-label="search" title="Search objects by name (/ or Ctrl-K)">
          Search <kbd>/</kbd>
        </button>
        {mayCreate(rules) && (
          <a className="button" href={`#/create?ns=${encodeURIComponent(ns)}`} data-testid="create-button">
            Create
          </a>
        )}
        <button onClick={() => setHelp(true)} aria-label="keyboard shortcuts" title="Keyboard shortcuts (?)">
          ?
        </button>
        <span className="user">{sess.user}</span>
        <button onClick={() => setTheme(theme === "dark" ? "light" : "dark")} data-testid="theme-toggle">
          {theme === "dark" ? "Light theme" : "Dark theme"}
        </button>
        <button
          onClick={async () => {
            await api.logout().catch(() => undefined);
            onLogout();
          }}
        >
          Log out
        </button>
      </header>
      <nav aria-label="kinds">
        <a href={`#/overview?ns=${ns}`}>Overview</a>
        {fedEnabled && (
          <a href="#/federation" className={route.view === "federation" ? "active" : ""}>
            Federation
          </a>
        )}
        <a href="#/logs" className={route.view === "logsearch" ? "active" : ""}>
          Log search
        </a>
        {sorted.map((r) => (
          <a key={`${r.group}/${r.resource}`} href={listHref(r.group, r.version, r.resource, ns)} className={(route.view === "list" || route.view === "object") && route.resource === r.resource ? "active" : ""}>
            {r.kind}
            {r.group ? <small> {r.group}</small> : null}
          </a>
        ))}
      </nav>
      <main key={cluster}>
        {cluster && (
          <p className="context-banner" role="status" data-testid="cluster-context">
            Viewing member cluster <strong>{cluster}</strong> with its credentials. <button onClick={() => switchTo("")}>Back to the host</button>
          </p>
        )}
        {switchError && (
          <p role="alert" className="error" data-testid="switch-error">
            {switchError}
          </p>
        )}
        {msg && <p className="error">{msg}</p>}
        {route.view === "federation" &&
          (hostResources === null ? (
            <p>Loading…</p>
          ) : fedEnabled ? (
            <Federation
              live={hostLive}
              resources={hostResources}
              current={cluster}
              onSwitch={async (n) => {
                if (await switchTo(n)) location.hash = `#/overview?ns=${ns}`;
              }}
            />
          ) : (
            <p className="note" data-testid="federation-disabled">
              Federation is not enabled on this host: the federation.skiff.io kinds are not served (run skiff server --enable federation).
            </p>
          ))}
        {route.view === "overview" && <Overview live={live} ns={ns} />}
        {route.view === "create" && <Create ns={ns} resources={resources} />}
        {route.view === "logsearch" && (
          <Suspense fallback={<p>Loading log search…</p>}>
            <LogSearch query={route.query} />
          </Suspense>
        )}
        {route.view === "list" && (
          <ListView key={`${route.group}/${route.resource}`} live={live} route={route} rules={rules} resource={resources.find((r) => r.group === route.group && r.resource === route.resource)} />
        )}
        {route.view === "object" && <ObjectView key={hash} live={live} route={route} rules={rules} resources={resources} resource={resources.find((r) => r.group === route.group && r.resource === route.resource)} />}
      </main>
      {palette && <Palette ns={ns} kinds={searchKinds} onClose={() => setPalette(false)} />}
      {help && <Help onClose={() => setHelp(false)} />}
    </div>
  );
}
